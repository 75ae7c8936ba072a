#include "cli/main.hpp"

int main(int argc, char** argv) { return gpuq::cli::Main(argc, argv); }
