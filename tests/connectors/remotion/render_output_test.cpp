#include "connectors/remotion/render_output.hpp"

#include <gtest/gtest.h>

namespace gpuq::connectors {
namespace {

TEST(RenderOutput, WeighsBundleRenderAndStitch) {
  RenderOutput output;

  auto bundling = output.Feed("Bundling 50%");
  auto rendering = output.Feed("Rendered 150/300, time remaining: 1m 2s");
  auto stitching = output.Feed("Stitched 300/300");

  ASSERT_TRUE(bundling && rendering && stitching);
  EXPECT_DOUBLE_EQ(*bundling->fraction, 0.15);
  EXPECT_EQ(bundling->message, "bundling 50%");
  EXPECT_DOUBLE_EQ(*rendering->fraction, 0.3 + 0.3);
  EXPECT_EQ(rendering->message, "rendering 150/300");
  EXPECT_DOUBLE_EQ(*stitching->fraction, 0.3 + 0.3 + 0.1);
  EXPECT_EQ(stitching->message, "stitching 300/300");
  EXPECT_TRUE(output.finished());
  EXPECT_EQ(output.frames(), 300);
}

TEST(RenderOutput, ReadsOlderAndEncodingForms) {
  RenderOutput output;

  auto rendering = output.Feed("Rendering frames 10/10");
  auto encoding = output.Feed("Encoding 5/10");

  ASSERT_TRUE(rendering && encoding);
  EXPECT_DOUBLE_EQ(*rendering->fraction, 0.9);
  EXPECT_DOUBLE_EQ(*encoding->fraction, 0.95);
  EXPECT_TRUE(output.finished());
  EXPECT_EQ(output.frames(), 10);
}

TEST(RenderOutput, IgnoresColoursAndBlanks) {
  RenderOutput output;

  auto progress = output.Feed("  \x1b[32mRendered\x1b[39m 1/4\r");

  ASSERT_TRUE(progress);
  EXPECT_DOUBLE_EQ(*progress->fraction, 0.3 + 0.15);
  EXPECT_FALSE(output.finished());
}

TEST(RenderOutput, NeverGoesBack) {
  RenderOutput output;
  ASSERT_TRUE(output.Feed("Rendered 8/10"));

  auto again = output.Feed("Bundling 10%");

  ASSERT_TRUE(again);
  EXPECT_DOUBLE_EQ(*again->fraction, 0.3 + 0.48);
}

TEST(RenderOutput, OtherLinesAreNotProgress) {
  RenderOutput output;

  EXPECT_FALSE(output.Feed("Copying public dir 212 MB"));
  EXPECT_FALSE(output.Feed("Rendered frames"));
  EXPECT_FALSE(output.Feed("Rendered 1/0"));
  EXPECT_FALSE(output.Feed(""));
  EXPECT_FALSE(output.finished());
}

TEST(RenderOutput, ErrorLinePrefersTheThrownError) {
  RenderOutput output;
  output.Feed("Rendered 5/10");
  output.Feed("An error occurred while rendering frame 5:");
  output.Feed("TypeError: clip.src is undefined");
  output.Feed("    at Clip (webpack://remotion/./src/Clip.tsx:12:9)");
  output.Feed("");
  output.Feed("\xF0\x9F\x92\xA1 Get help for this issue at https://remotion.dev/docs/timeout");

  EXPECT_EQ(output.ErrorLine(), "TypeError: clip.src is undefined");
}

TEST(RenderOutput, ErrorLineFallsBackToTheLastOtherLine) {
  RenderOutput output;
  output.Feed("Bundling 100%");
  output.Feed("Something odd happened");
  output.Feed("Stitched 1/2");

  EXPECT_EQ(output.ErrorLine(), "Something odd happened");
}

TEST(RenderOutput, NoticesNpxRefusingToInstall) {
  RenderOutput output;

  output.Feed(
      "npm error npx canceled due to missing packages and no YES option: [\"remotion@4.0.0\"]");

  EXPECT_TRUE(output.npx_missing_package());
}

}  // namespace
}  // namespace gpuq::connectors
