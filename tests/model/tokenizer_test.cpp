// Tokenizer and StreamDecoder: the fixture tokenizer against the Hugging Face tokenization golden
// (ids, pieces, decoded text), round trips, BOS, load errors, and the streaming decoder, whose
// output must add up to decode(all ids) on long random id sequences full of byte pieces while
// never releasing half a UTF-8 character.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "model/tokenizer.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

const Tokenizer& fixture_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::load(test::fixture("tokenizer.model"));
  return tokenizer;
}

// True when text is well-formed UTF-8 (no truncated or stray sequences).
bool is_valid_utf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t length = lead < 0x80    ? 1
                          : lead >= 0xF0 ? 4
                          : lead >= 0xE0 ? 3
                          : lead >= 0xC0 ? 2
                                         : 0;
    if (length == 0 || i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

// Streams ids through a StreamDecoder; returns the released pieces (the flush last).
std::vector<std::string> stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  StreamDecoder decoder(tokenizer);
  std::vector<std::string> released;
  for (const int32_t id : ids) released.push_back(decoder.push(id));
  released.push_back(decoder.flush());
  return released;
}

std::string concatenate(const std::vector<std::string>& pieces) {
  std::string text;
  for (const auto& piece : pieces) text += piece;
  return text;
}

int32_t byte_id(const Tokenizer& tokenizer, uint8_t byte) {
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", byte);
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.piece(id) == name) return id;
  }
  throw Error(std::string("no byte piece ") + name);
}

TEST(Tokenizer, MatchesHuggingFaceGolden) {
  Q4JIT_REQUIRE_SHARED(shared);
  std::ifstream file(shared / "models/golden/hf_fp16.json");
  const auto golden = nlohmann::json::parse(file);
  const Tokenizer tokenizer = Tokenizer::load(shared / "models/fixture-fp16");
  ASSERT_EQ(golden["tokenize"].size(), 8u);
  for (const auto& entry : golden["tokenize"]) {
    const std::string text = entry["text"];
    SCOPED_TRACE(text);
    const auto ids = tokenizer.encode(text, false);
    EXPECT_EQ(ids, entry["ids"].get<std::vector<int32_t>>());
    std::vector<std::string> pieces;
    for (const int32_t id : ids) pieces.push_back(tokenizer.piece(id));
    EXPECT_EQ(pieces, entry["pieces"].get<std::vector<std::string>>());
    EXPECT_EQ(tokenizer.decode(ids), entry["decoded"].get<std::string>());
    EXPECT_EQ(concatenate(stream(tokenizer, ids)), entry["decoded"].get<std::string>());
  }
}

TEST(Tokenizer, RoundTripAndBos) {
  const Tokenizer& tokenizer = fixture_tokenizer();
  EXPECT_EQ(tokenizer.vocab_size(), 4096);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_id(), 2);
  const std::string text = "In the beginning, 42 caf\xC3\xA9s\tand \xF0\x9F\x99\x82 emoji.\n";
  const auto plain = tokenizer.encode(text, false);
  const auto with_bos = tokenizer.encode(text, true);
  ASSERT_FALSE(plain.empty());
  ASSERT_EQ(with_bos.size(), plain.size() + 1);
  EXPECT_EQ(with_bos.front(), tokenizer.bos_id());
  EXPECT_TRUE(std::equal(plain.begin(), plain.end(), with_bos.begin() + 1));
  EXPECT_EQ(tokenizer.decode(plain), text);
  EXPECT_EQ(tokenizer.decode(with_bos), text);  // BOS decodes to nothing
  EXPECT_EQ(tokenizer.piece(tokenizer.bos_id()), "<s>");
  EXPECT_TRUE(tokenizer.is_control(tokenizer.eos_id()));
  EXPECT_TRUE(tokenizer.encode("", false).empty());
}

TEST(Tokenizer, LoadsFolderOrFile) {
  test::TempDir dir;
  std::filesystem::copy_file(test::fixture("tokenizer.model"), dir / "tokenizer.model");
  EXPECT_EQ(Tokenizer::load(dir.path()).encode("hello world", false),
            fixture_tokenizer().encode("hello world", false));
}

TEST(Tokenizer, MissingFileIsAnErrorNamingIt) {
  test::TempDir dir;
  try {
    Tokenizer::load(dir.path());
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find((dir / "tokenizer.model").string()), std::string::npos)
        << error.what();
  }
}

TEST(Tokenizer, CorruptFileIsAnErrorNamingIt) {
  test::TempDir dir;
  const auto path = dir / "tokenizer.model";
  std::ofstream(path, std::ios::binary) << "this is not a protobuf \x01\x02\xff\xfe model";
  try {
    Tokenizer::load(path);
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
  }
  // A truncated real model.
  std::ifstream real(test::fixture("tokenizer.model"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(real)), std::istreambuf_iterator<char>());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 3);
  EXPECT_THROW(Tokenizer::load(path), Error);
}

TEST(Tokenizer, IdOutsideVocabularyIsAnError) {
  const Tokenizer& tokenizer = fixture_tokenizer();
  EXPECT_THROW(tokenizer.decode({5, -1}), Error);
  EXPECT_THROW(tokenizer.piece(tokenizer.vocab_size()), Error);
  StreamDecoder decoder(tokenizer);
  EXPECT_THROW(decoder.push(100000), Error);
}

TEST(StreamDecoder, EmojiBytesReleasedOnlyWhenWhole) {
  const Tokenizer& tokenizer = fixture_tokenizer();
  const auto ids = tokenizer.encode("ok \xF0\x9F\x99\x82 done", false);
  const std::vector<int32_t> emoji = {byte_id(tokenizer, 0xF0), byte_id(tokenizer, 0x9F),
                                      byte_id(tokenizer, 0x99), byte_id(tokenizer, 0x82)};
  ASSERT_NE(std::search(ids.begin(), ids.end(), emoji.begin(), emoji.end()), ids.end())
      << "the fixture tokenizer should spell the emoji with byte pieces";
  StreamDecoder decoder(tokenizer);
  std::string text;
  for (const int32_t id : ids) {
    const std::string piece = decoder.push(id);
    EXPECT_TRUE(is_valid_utf8(piece));
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << "released a replacement char";
    if (id == emoji[0] || id == emoji[1] || id == emoji[2]) {
      EXPECT_EQ(piece, "");
    }
    if (id == emoji[3]) {
      EXPECT_EQ(piece, "\xF0\x9F\x99\x82");
    }
    text += piece;
  }
  text += decoder.flush();
  EXPECT_EQ(text, "ok \xF0\x9F\x99\x82 done");
}

TEST(StreamDecoder, IncompleteTailComesOutAtFlush) {
  const Tokenizer& tokenizer = fixture_tokenizer();
  const std::vector<int32_t> ids = {tokenizer.encode("x", false)[0], byte_id(tokenizer, 0xF0),
                                    byte_id(tokenizer, 0x9F)};
  const auto released = stream(tokenizer, ids);
  EXPECT_EQ(released[1], "");
  EXPECT_EQ(released[2], "");
  EXPECT_EQ(concatenate(released), tokenizer.decode(ids));  // the replacement chars, at the end
}

// Random ids: whole UTF-8 characters spelled in bytes, stray and truncated bytes, controls,
// <unk>, lone "▁" pieces and ordinary pieces, in long sequences.
std::vector<int32_t> random_ids(const Tokenizer& tokenizer, size_t count, uint32_t seed) {
  std::mt19937 random(seed);
  const std::vector<std::vector<uint8_t>> characters = {
      {0xF0, 0x9F, 0x99, 0x82}, {0xE6, 0x97, 0xA5}, {0xC3, 0xA9}, {0x41}, {0x0A}};
  std::vector<int32_t> ids;
  while (ids.size() < count) {
    const int kind = static_cast<int>(random() % 10);
    if (kind < 3) {
      for (uint8_t byte : characters[random() % characters.size()]) {
        ids.push_back(byte_id(tokenizer, byte));
      }
    } else if (kind == 3) {
      ids.push_back(byte_id(tokenizer, static_cast<uint8_t>(random() % 256)));
    } else if (kind == 4) {
      ids.push_back(static_cast<int32_t>(random() % 3));  // <unk>, <s>, </s>
    } else {
      ids.push_back(static_cast<int32_t>(random() % tokenizer.vocab_size()));
    }
  }
  return ids;
}

TEST(StreamDecoder, EqualsWholeDecodeOnRandomSequences) {
  const Tokenizer& tokenizer = fixture_tokenizer();
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const auto ids = random_ids(tokenizer, seed <= 30 ? 60 : 3000, seed);
    const auto released = stream(tokenizer, ids);
    ASSERT_EQ(concatenate(released), tokenizer.decode(ids)) << "seed " << seed;
    for (size_t i = 0; i + 1 < released.size(); ++i) {
      ASSERT_TRUE(is_valid_utf8(released[i])) << "seed " << seed << " id " << i;
    }
    // Every prefix too: what was released so far is a prefix of the whole decode.
    std::vector<int32_t> prefix(ids.begin(), ids.begin() + ids.size() / 2);
    EXPECT_EQ(concatenate(stream(tokenizer, prefix)), tokenizer.decode(prefix));
  }
}

TEST(StreamDecoder, CostPerTokenDoesNotGrow) {
  // Re-decoding from the start would make 40,000 tokens take seconds (quadratic); a bounded
  // window keeps the second half as fast as the first.
  const Tokenizer& tokenizer = fixture_tokenizer();
  const auto ids = random_ids(tokenizer, 40000, 7);
  StreamDecoder decoder(tokenizer);
  std::string text;
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (size_t i = 0; i < ids.size() / 2; ++i) text += decoder.push(ids[i]);
  const auto middle = clock::now();
  for (size_t i = ids.size() / 2; i < ids.size(); ++i) text += decoder.push(ids[i]);
  const auto end = clock::now();
  text += decoder.flush();
  EXPECT_EQ(text, tokenizer.decode(ids));
  EXPECT_LT(std::chrono::duration<double>(end - middle).count(),
            3 * std::chrono::duration<double>(middle - start).count() + 0.05);
}

}  // namespace
}  // namespace q4jit
