#pragma once
// Reading the Remotion CLI's output (protocols.md section 5): the non-TTY progress lines and the
// error a failed render ends with. Not thread-safe: one per render.
#include <optional>
#include <string>
#include <string_view>

#include "core/run.hpp"

namespace gpuq::connectors {

class RenderOutput {
 public:
  // Reads one line (no newline; ANSI colour codes and surrounding blanks are ignored). Returns
  // the progress after a progress line, with a message ("rendering 12/300"), else std::nullopt.
  // Understood, anywhere after leading blanks: "Bundling 45%", "Rendered|Rendering a/b" (also
  // "Rendering frames a/b"), "Stitched|Stitching|Encoded|Encoding a/b". Progress is 0.3 * bundle +
  // 0.6 * render + 0.1 * stitch and never goes back; a render or stitch line means bundling is
  // done.
  std::optional<Progress> Feed(std::string_view line);

  // A final "Rendered N/N" or "Stitched N/N" (or an older or Encod- form) was seen.
  bool finished() const { return finished_; }
  // The frame count of the last render or stitch line; 0 before any.
  int frames() const { return frames_; }
  // The line that best says what went wrong: the last thrown error ("Error: ...", "TypeError:
  // ..."), else the last line mentioning "error", else the last other line that is not
  // progress (stack frames "at ..." and help hints skipped). Empty if none.
  std::string ErrorLine() const;
  // npx was told not to install and Remotion is not installed ("npx canceled due to missing
  // packages", "could not determine executable to run").
  bool npx_missing_package() const { return npx_missing_package_; }

 private:
  double bundle_ = 0, render_ = 0, stitch_ = 0;
  double reported_ = -1;
  bool finished_ = false;
  int frames_ = 0;
  std::string thrown_line_, error_line_, other_line_;
  bool npx_missing_package_ = false;
};

}  // namespace gpuq::connectors
