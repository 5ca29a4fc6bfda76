// The AMD architecture table (runtime/hip/hip_archs.hpp): names with target features, wavefront
// sizes, and the one-line refusal of what hiprtc 5.2 aborts on. Pure table logic: needs neither
// libamdhip64 nor the HIP headers, and never calls hiprtc.
#include <gtest/gtest.h>

#include "common/error.hpp"
#include "runtime/hip/hip_archs.hpp"

namespace q4jit {
namespace {

std::string refusal(const std::string& name, int hip_major) {
  try {
    find_hip_arch(name, hip_major, std::to_string(hip_major) + ".2.21153");
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(HipArchs, ParsesNamesWithTargetFeatures) {
  EXPECT_EQ(parse_gfx("gfx90a"), "gfx90a");
  EXPECT_EQ(parse_gfx("gfx90a:sramecc+:xnack-"), "gfx90a");
  EXPECT_EQ(parse_gfx("gfx1030"), "gfx1030");
  for (const char* bad : {"sm_90", "gfx", "gfx9", "gfx90g", "gfx10300", "GFX90A", ""}) {
    EXPECT_THROW(parse_gfx(bad), Error) << bad;
  }
}

TEST(HipArchs, WavefrontSizes) {
  EXPECT_EQ(find_hip_arch("gfx90a", 5, "5.2.21153").wave_size, 64);   // CDNA2
  EXPECT_EQ(find_hip_arch("gfx908", 5, "5.2.21153").wave_size, 64);   // CDNA1
  EXPECT_EQ(find_hip_arch("gfx1030", 5, "5.2.21153").wave_size, 32);  // RDNA2
  EXPECT_EQ(find_hip_arch("gfx90a:sramecc+:xnack-", 5, "5.2.21153").name, "gfx90a");
}

TEST(HipArchs, RefusesWhatHiprtc52AbortsOnInOneLine) {
  for (const std::string name : {"gfx1100", "gfx940", "gfx942"}) {
    const std::string message = refusal(name, 5);
    ASSERT_FALSE(message.empty()) << name << " accepted under HIP 5";
    EXPECT_TRUE(message.starts_with(name + ": ")) << message;
    EXPECT_NE(message.find("aborts"), std::string::npos) << message;
    EXPECT_NE(message.find("gfx90a"), std::string::npos) << "lists what works: " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_TRUE(refusal(name, 6).empty()) << name << " refused under HIP 6";
  }
}

TEST(HipArchs, RefusesUnknownArchitectures) {
  const std::string message = refusal("gfx1200", 6);
  EXPECT_TRUE(message.starts_with("gfx1200: not among")) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(HipArchs, TheCiArchitecturesAreInTheHip5List) {
  const std::string list = hip_arch_list(5);
  for (const char* name : {"gfx90a", "gfx908", "gfx1030"}) {
    EXPECT_NE(list.find(name), std::string::npos) << list;
  }
  for (const char* name : {"gfx940", "gfx942", "gfx1100"}) {
    EXPECT_EQ(list.find(name), std::string::npos) << list;
  }
}

}  // namespace
}  // namespace q4jit
