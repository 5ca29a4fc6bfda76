// SHA-256 through libcrypto (common/sha256.hpp) and the embedded kernel sources' hashes and
// include resolution (kernel_sources/embedded_sources.hpp).
#include <gtest/gtest.h>

#include "common/error.hpp"
#include "common/sha256.hpp"
#include "kernel_sources/embedded_sources.hpp"

namespace q4jit {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(Sha256().update("a").update("bc").finish()), sha256_hex("abc"));
}

TEST(Sha256, FieldsAreDelimited) {
  const auto ab_c = Sha256().update_field("ab").update_field("c").finish();
  const auto a_bc = Sha256().update_field("a").update_field("bc").finish();
  EXPECT_NE(ab_c, a_bc);
}

TEST(EmbeddedSources, BuildTimeHashesMatchTheBytes) {
  ASSERT_FALSE(embedded_files().empty());
  for (const EmbeddedFile& file : embedded_files()) {
    EXPECT_EQ(sha256_hex(file.bytes), file.sha256) << file.name;
    EXPECT_FALSE(file.bytes.empty()) << file.name;
  }
}

TEST(EmbeddedSources, RmsNormIncludesTheCommonHeader) {
  const EmbeddedFile* rms_norm = find_embedded_file("rms_norm.cu");
  ASSERT_NE(rms_norm, nullptr);
  bool found = false;
  for (const EmbeddedFile* header : embedded_includes(*rms_norm)) {
    found |= header->name == "q4jit_common.cuh";
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(find_embedded_file("no_such_file.cu"), nullptr);
}

TEST(EmbeddedSources, QuotedIncludesIgnoreAngleBrackets) {
  const auto names = quoted_includes(
      "#include <cuda_fp16.h>\n  #  include \"a.cuh\"\n// #include \"comment.cuh\"\n#include "
      "\"b.cuh\"");
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "a.cuh");
  EXPECT_EQ(names[1], "b.cuh");
}

TEST(EmbeddedSources, UnknownIncludeIsAnError) {
  const EmbeddedFile fake{"fake.cu", "#include \"missing_header.cuh\"\n", ""};
  try {
    embedded_includes(fake);
    FAIL() << "expected an Error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("missing_header.cuh"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("fake.cu"), std::string::npos);
  }
}

}  // namespace
}  // namespace q4jit
