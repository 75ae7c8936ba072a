// gpuq-fake-remotion: a stand-in for the Remotion CLI (`npx remotion render ...`) that tests and
// the demo run as a real process. It takes the real argv and prints the real CLI's non-TTY
// progress lines (protocols.md section 5), then writes a small file that starts like an mp4.
//
//   gpuq-fake-remotion render <entry-point> <composition-id> <output> [--props=<path|json>]
//                      [--codec=C] [--concurrency=N] [--frames=A[-B]] [--log=L] [other --flags]
//
// - --props: a file (relative to the CWD) read as JSON, else inline JSON; neither -> Remotion's
//   "You passed --props but it was neither valid JSON nor a file path..." and exit 1.
// - The entry point must exist (relative to the CWD); the composition must be one of
//   $FAKE_REMOTION_COMPOSITIONS (comma-separated, default "Main"), else the CLI's "Could not
//   find composition with ID ..." and exit 1.
// - Frames: the props' durationInFrames (default 30), or the count of --frames.
// - Output, one line each, flushed: "Bundling 0%" .. "Bundling 100%" (steps of 10), "Getting
//   compositions", "Rendered i/N, time remaining: Xs" for each frame, "Stitched i/N" for each
//   frame, then "+ <output> <size> B". Each step sleeps $FAKE_REMOTION_FRAME_MS (default 1).
// - $FAKE_REMOTION_MODE:
//     ok (default)  the above, output written, exit 0
//     old-style     "Rendering i/N" and "Stitching i/N" (older CLI versions), otherwise as ok
//     fail          at half the frames: "An error occurred while rendering frame K:", an
//                   "Error: could not load clip ..." line and a stack on stderr, exit 1
//     no-output     every line as ok, but no output file, exit 0
//     partial       stops at half the frames, writes a truncated output file and exits 0 (what
//                   the real CLI does on SIGINT)
//     hang          after "Rendered 1/N" starts a child (a browser: it ignores SIGTERM and has
//                   no death signal) in its own process group and waits forever
// - $FAKE_REMOTION_PID_FILE: "<own pid> <pgid> [<child pid>]" is written there once running
//   (in hang mode after the child started).
// - $FAKE_REMOTION_ARGS_FILE: {"argv": [...], "cwd": "..."} is written there at start.
// - $FAKE_REMOTION_IGNORE_SIGTERM=1: the process ignores SIGTERM (the real CLI does not).
// - SIGINT: exits 0 at once, like the real CLI's Ctrl-C handler.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Json = nlohmann::json;

std::string Env(const char* name, const char* fallback = "") {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

int EnvInt(const char* name, int fallback) {
  std::string text = Env(name);
  if (text.empty()) return fallback;
  return std::atoi(text.c_str());
}

void Pause(int ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::exit(1);
}

void OnSigint(int) { ::_exit(0); }

// The number of frames of a --frames value ("42" -> 1, "0-9" -> 10); 0 when not a range.
int FrameCount(const std::string& range, int duration) {
  auto dash = range.find('-');
  if (dash == std::string::npos) return 1;
  int first = std::atoi(range.substr(0, dash).c_str());
  std::string last_text = range.substr(dash + 1);
  int last = last_text.empty() ? duration - 1 : std::atoi(last_text.c_str());
  return last >= first ? last - first + 1 : 0;
}

// Like Chrome under Puppeteer: a child that outlives a polite SIGTERM, so only a SIGKILL to the
// whole group ends it. The alarm keeps a broken test from leaving it behind for long.
pid_t StartBrowser() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGTERM, SIG_IGN);
    ::alarm(120);
    while (true) ::pause();
  }
  return pid;
}

void WritePidFile(pid_t child) {
  std::string path = Env("FAKE_REMOTION_PID_FILE");
  if (path.empty()) return;
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << ::getpid() << ' ' << ::getpgrp();
    if (child > 0) out << ' ' << child;
    out << '\n';
  }
  std::filesystem::rename(tmp, path);  // readers never see half a line
}

void WriteOutput(const std::filesystem::path& output, size_t bytes) {
  // An 'ftyp' box (32 bytes: isom, minor 0x200, isom iso2 avc1 mp41), then a 'free' box.
  std::string data(
      "\x00\x00\x00\x20"
      "ftypisom\x00\x00\x02\x00"
      "isomiso2avc1mp41",
      32);
  std::string filler(bytes > data.size() + 8 ? bytes - data.size() - 8 : 8, 'x');
  uint32_t size = static_cast<uint32_t>(filler.size() + 8);
  data += std::string{static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                      static_cast<char>(size >> 8), static_cast<char>(size)};
  data += "free" + filler;
  std::ofstream out(output, std::ios::binary | std::ios::trunc);
  if (!out) Fail("Error: cannot write output " + output.string());
  out << data;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a pipe: one line at a time, as Remotion flushes
  ::signal(SIGINT, OnSigint);
  if (Env("FAKE_REMOTION_IGNORE_SIGTERM") == "1") ::signal(SIGTERM, SIG_IGN);

  std::vector<std::string> args(argv + 1, argv + argc);
  if (std::string path = Env("FAKE_REMOTION_ARGS_FILE"); !path.empty()) {
    std::ofstream out(path);
    out << Json{{"argv", args}, {"cwd", std::filesystem::current_path().string()}}.dump();
  }
  std::vector<std::string> positional;
  std::string props_arg, frames_arg, codec = "h264";
  bool has_props = false;
  for (const auto& arg : args) {
    if (arg.starts_with("--props=")) {
      props_arg = arg.substr(8);
      has_props = true;
    } else if (arg.starts_with("--frames=")) {
      frames_arg = arg.substr(9);
    } else if (arg.starts_with("--codec=")) {
      codec = arg.substr(8);
    } else if (arg.starts_with("--")) {
      continue;  // every other flag is accepted and ignored
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.empty() || positional[0] != "render") {
    Fail("Error: fake remotion knows only the render command");
  }
  if (positional.size() != 4) {
    Fail("Error: usage: remotion render <entry-point> <composition-id> <output>");
  }
  const std::string& entry = positional[1];
  const std::string& composition = positional[2];
  std::filesystem::path output = positional[3];

  Json props = Json::object();
  if (has_props) {
    try {
      std::filesystem::path file = std::filesystem::absolute(props_arg);
      if (std::filesystem::exists(file)) {
        std::ifstream in(file);
        std::stringstream text;
        text << in.rdbuf();
        props = Json::parse(text.str());
      } else {
        props = Json::parse(props_arg);
      }
    } catch (const std::exception&) {
      std::printf(
          "You passed --props but it was neither valid JSON nor a file path to a valid JSON "
          "file.\nCheck that your input is parseable using `JSON.parse` and try again.\n");
      return 1;
    }
  }
  if (!std::filesystem::exists(entry)) {
    Fail("Error: Could not find an entry point at " + entry);
  }

  int frame_ms = EnvInt("FAKE_REMOTION_FRAME_MS", 1);
  std::string mode = Env("FAKE_REMOTION_MODE", "ok");
  bool old_style = mode == "old-style";

  for (int percent = 0; percent <= 100; percent += 10) {
    std::printf("Bundling %d%%\n", percent);
    Pause(frame_ms);
  }
  std::printf("Getting compositions\n");
  std::string known = Env("FAKE_REMOTION_COMPOSITIONS", "Main");
  if (("," + known + ",").find("," + composition + ",") == std::string::npos) {
    Fail("Error: Could not find composition with ID " + composition +
         ". The following compositions are available: " + known);
  }
  int duration = 30;
  if (props.is_object() && props.contains("durationInFrames") &&
      props["durationInFrames"].is_number_integer()) {
    duration = props["durationInFrames"].get<int>();
  }
  int frames = frames_arg.empty() ? duration : FrameCount(frames_arg, duration);
  std::printf("Composition %s\nCodec %s\nOutput %s\n", composition.c_str(), codec.c_str(),
              output.c_str());

  const char* rendered = old_style ? "Rendering" : "Rendered";
  const char* stitched = old_style ? "Stitching" : "Stitched";
  for (int i = 1; i <= frames; ++i) {
    if (old_style) {
      std::printf("%s %d/%d\n", rendered, i, frames);
    } else {
      std::printf("%s %d/%d, time remaining: %ds\n", rendered, i, frames,
                  (frames - i) * frame_ms / 1000);
    }
    Pause(frame_ms);
    if (mode == "hang") {
      pid_t browser = StartBrowser();
      WritePidFile(browser);
      while (true) ::pause();
    }
    if (i == frames / 2 && mode == "fail") {
      std::fflush(stdout);
      Fail("An error occurred while rendering frame " + std::to_string(i) +
           ":\nError: could not load clip \"clips/missing.mp4\" (404 Not Found)\n"
           "    at Clip (webpack://remotion/./src/Clip.tsx:12:9)\n"
           "    at renderWithHooks (webpack://remotion/./node_modules/react-dom.js:1:1)");
    }
    if (i == frames / 2 && mode == "partial") {
      WriteOutput(output, 100);
      return 0;
    }
  }
  WritePidFile(0);
  for (int i = 1; i <= frames; ++i) {
    std::printf("%s %d/%d\n", stitched, i, frames);
    Pause(frame_ms);
  }
  if (mode == "no-output") return 0;
  size_t size = 1024 + static_cast<size_t>(frames) * 16;
  WriteOutput(output, size);
  std::printf("+ %s %zu B\n", output.c_str(), size);
  return 0;
}
