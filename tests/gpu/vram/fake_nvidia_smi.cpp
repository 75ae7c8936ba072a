// A fake nvidia-smi for tests. It answers exactly the two queries NvidiaSmiVram runs from the
// files in the directory named by FAKE_NVIDIA_SMI_DIR, read at each run:
//   gpus.csv, apps.csv   printed as the answer to --query-gpu / --query-compute-apps
//   exit                 "<code> <message>": print the message and exit with the code
//   hang                 (exists) wait for a signal forever, to test the timeout
// Every run appends its arguments, one line, to args.log there. Without the variable it
// behaves like nvidia-smi on a machine without a driver (exit 9).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace {
std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}
}  // namespace

int main(int argc, char** argv) {
  const char* dir_env = std::getenv("FAKE_NVIDIA_SMI_DIR");
  if (!dir_env) {
    std::cout << "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                 "Make sure that the latest NVIDIA driver is installed and running.\n";
    return 9;
  }
  std::string dir = dir_env;
  std::string args;
  for (int i = 1; i < argc; ++i) args += std::string(i > 1 ? " " : "") + argv[i];
  std::ofstream(dir + "/args.log", std::ios::app) << args << "\n";
  if (access((dir + "/hang").c_str(), F_OK) == 0) {
    while (true) pause();
  }
  if (access((dir + "/exit").c_str(), F_OK) == 0) {
    std::istringstream spec(Read(dir + "/exit"));
    int code = 1;
    spec >> code >> std::ws;
    std::string message;
    std::getline(spec, message, '\0');
    std::cout << message;
    return code;
  }
  const std::string format = "--format=csv,noheader,nounits";
  if (argc == 3 && argv[2] == format &&
      std::string(argv[1]) == "--query-gpu=index,name,uuid,memory.total,memory.used,memory.free") {
    std::cerr << "warning: a line on stderr that must not reach the parser\n";
    std::cout << Read(dir + "/gpus.csv");
    return 0;
  }
  if (argc == 3 && argv[2] == format &&
      std::string(argv[1]) == "--query-compute-apps=gpu_uuid,pid,used_memory") {
    std::cout << Read(dir + "/apps.csv");
    return 0;
  }
  std::cerr << "fake nvidia-smi: unexpected arguments: " << args << "\n";
  return 2;
}
