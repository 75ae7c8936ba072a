# ccache when present. PCH needs the sloppiness settings below or every hit is a miss.
find_program(GPUQ_CCACHE ccache)
if(GPUQ_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      ${GPUQ_CCACHE})
endif()
