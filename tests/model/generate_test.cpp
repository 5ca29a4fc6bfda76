// generate() on a tiny random model (tests/support write_tiny_model) with the CPU reference
// engine: streamed text adds up to the result, greedy decoding is the argmax of the engine's own
// logits and repeatable, and each stop condition (max_new_tokens, stop string, EOS, full cache)
// ends generation where it should; a prompt longer than the cache is an Error.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "model/generate.hpp"
#include "model/ref/cpu_engine.hpp"
#include "model/sampling.hpp"
#include "model/weights.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

struct TinySetup {
  test::TempDir dir;
  Model model;
  Tokenizer tokenizer;
  TinySetup() : model(write_and_load(dir)), tokenizer(Tokenizer::load(dir.path())) {}
  static Model write_and_load(const test::TempDir& dir) {
    test::write_tiny_model(dir.path(), 0, false, true, 7);
    return load_model(dir.path());
  }
};

TinySetup& tiny() {
  static TinySetup setup;
  return setup;
}

GenerateOptions greedy_options(int max_new_tokens) {
  GenerateOptions options;
  options.max_new_tokens = max_new_tokens;
  options.sampling.greedy = true;
  options.stop_at_eos = false;
  return options;
}

struct Streamed {
  std::vector<std::string> pieces;
  std::string text() const {
    std::string all;
    for (const auto& piece : pieces) all += piece;
    return all;
  }
};

GenerateResult run(Engine& engine, const GenerateOptions& options, Streamed* streamed = nullptr,
                   const std::string& prompt = "Once upon a time") {
  return generate(engine, tiny().tokenizer, prompt, options, [streamed](std::string_view piece) {
    if (streamed) streamed->pieces.emplace_back(piece);
  });
}

TEST(Generate, StreamedPiecesAddUpToTheText) {
  CpuEngine engine(tiny().model);
  GenerateOptions options = greedy_options(40);
  options.sampling.greedy = false;
  options.sampling.temperature = 1.0f;
  options.sampling.seed = 5;
  Streamed streamed;
  const auto result = run(engine, options, &streamed);
  EXPECT_EQ(result.stop_reason, "max_new_tokens");
  EXPECT_EQ(result.generated_ids.size(), 40u);
  EXPECT_EQ(result.prompt_ids, tiny().tokenizer.encode("Once upon a time", true));
  EXPECT_FALSE(result.text.empty());
  EXPECT_EQ(streamed.text(), result.text);
  EXPECT_GE(result.prompt_seconds, 0);
  EXPECT_GT(result.generate_seconds, 0);
}

TEST(Generate, TextContinuesThePromptWithItsLeadingSpace) {
  // decode(prompt) + text == decode(prompt + generated): a first piece like "▁of" must come out
  // as " of", not "of" as it would at the start of a text.
  CpuEngine engine(tiny().model);
  const Tokenizer& tokenizer = tiny().tokenizer;
  int space_led = 0;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    GenerateOptions options = greedy_options(3);
    options.sampling.greedy = false;
    options.sampling.seed = seed;
    const auto result = run(engine, options);
    auto all_ids = result.prompt_ids;
    all_ids.insert(all_ids.end(), result.generated_ids.begin(), result.generated_ids.end());
    EXPECT_EQ(tokenizer.decode(result.prompt_ids) + result.text, tokenizer.decode(all_ids));
    space_led += tokenizer.piece(result.generated_ids[0]).starts_with("\xE2\x96\x81");
  }
  EXPECT_GT(space_led, 0) << "no seed began with a space piece: the check above proved nothing";
}

TEST(Generate, GreedyIsTheArgmaxOfTheEnginesLogitsAndRepeatable) {
  CpuEngine engine(tiny().model);
  const auto first = run(engine, greedy_options(20));
  const auto second = run(engine, greedy_options(20));
  EXPECT_EQ(first.generated_ids, second.generated_ids);
  EXPECT_EQ(first.text, second.text);
  // The same tokens by hand: full forward over the sequence so far, argmax of the last row.
  CpuEngine reference(tiny().model);
  std::vector<int32_t> sequence = first.prompt_ids;
  const int vocab = tiny().model.config.vocab_size;
  for (const int32_t expected : first.generated_ids) {
    reference.reset();
    const auto logits = reference.forward(sequence, true);
    const auto last = logits.end() - vocab;
    const auto best = static_cast<int32_t>(std::max_element(last, logits.end()) - last);
    ASSERT_EQ(best, expected) << "position " << sequence.size();
    sequence.push_back(best);
  }
}

// Engine::decode_greedy's default: each chosen id is the argmax of the step's logits, a stop
// from the callback keeps exactly the ids seen, and decoding goes on from there unchanged.
TEST(DecodeGreedy, ChoosesTheArgmaxStopsWhenToldAndResumes) {
  CpuEngine engine(tiny().model);
  const std::vector<int32_t> prompt = tiny().tokenizer.encode("Once upon a time", true);
  const int32_t first = argmax(engine.forward(prompt, false));
  const std::vector<int32_t> all = engine.decode_greedy(first, 8);
  ASSERT_EQ(all.size(), 8u);
  EXPECT_EQ(engine.position(), int(prompt.size()) + 8);

  CpuEngine stepped(tiny().model);
  std::vector<float> logits = stepped.forward(prompt, false);
  int32_t input = argmax(logits);
  for (size_t i = 0; i < all.size(); ++i) {
    input = argmax(stepped.forward(std::span<const int32_t>(&input, 1), false));
    EXPECT_EQ(input, all[i]) << "step " << i;
  }

  engine.reset();
  engine.forward(prompt, false);
  std::vector<int32_t> seen;
  const std::vector<int32_t> head = engine.decode_greedy(first, 8, [&](int32_t id) {
    seen.push_back(id);
    return seen.size() < 3;
  });
  EXPECT_EQ(head, seen);
  EXPECT_EQ(head, std::vector<int32_t>(all.begin(), all.begin() + 3));
  EXPECT_EQ(engine.position(), int(prompt.size()) + 3);
  EXPECT_EQ(engine.decode_greedy(head.back(), 5), std::vector<int32_t>(all.begin() + 3, all.end()));
  EXPECT_THROW(engine.decode_greedy(first, engine.max_positions()), Error);
}

TEST(Generate, StopStringEndsTextBeforeItAndIsNeverStreamed) {
  CpuEngine engine(tiny().model);
  Streamed first_pieces;
  const auto first = run(engine, greedy_options(40), &first_pieces);
  // A stop string that surely occurs: the text of two consecutive tokens in the middle.
  std::string stop;
  for (size_t i = 10; i + 1 < first_pieces.pieces.size() && stop.size() < 2; ++i) {
    stop = first_pieces.pieces[i] + first_pieces.pieces[i + 1];
  }
  ASSERT_GE(stop.size(), 2u) << first.text;
  const size_t at = first.text.find(stop);
  ASSERT_NE(at, std::string::npos);

  GenerateOptions options = greedy_options(40);
  options.stop_strings = {"never-occurs-\x01", stop};
  Streamed streamed;
  const auto result = run(engine, options, &streamed);
  EXPECT_EQ(result.stop_reason, "stop_string");
  EXPECT_EQ(result.text, first.text.substr(0, at));
  EXPECT_EQ(streamed.text(), result.text);
  EXPECT_EQ(streamed.text().find(stop), std::string::npos);
  EXPECT_LT(result.generated_ids.size(), first.generated_ids.size());
}

TEST(Generate, StopStringThatNeverOccursChangesNothing) {
  CpuEngine engine(tiny().model);
  const auto plain = run(engine, greedy_options(30));
  GenerateOptions options = greedy_options(30);
  options.stop_strings = {"\x01\x02 no such text"};
  Streamed streamed;
  const auto result = run(engine, options, &streamed);
  EXPECT_EQ(result.stop_reason, "max_new_tokens");
  EXPECT_EQ(result.text, plain.text);
  EXPECT_EQ(streamed.text(), plain.text);
}

TEST(Generate, MaxNewTokens) {
  CpuEngine engine(tiny().model);
  for (const int limit : {0, 1, 7}) {
    const auto result = run(engine, greedy_options(limit));
    EXPECT_EQ(result.generated_ids.size(), size_t(limit));
    EXPECT_EQ(result.stop_reason, "max_new_tokens");
  }
}

TEST(Generate, StopsAtAnyEosTokenOfTheConfig) {
  CpuEngine plain_engine(tiny().model);
  const auto plain = run(plain_engine, greedy_options(10));
  // Make the third greedy token an end-of-sequence token (the second of two).
  const int32_t third = plain.generated_ids[2];
  const auto first_at = std::find(plain.generated_ids.begin(), plain.generated_ids.end(), third) -
                        plain.generated_ids.begin();
  Model model = tiny().model;
  model.config.eos_token_ids = {tiny().tokenizer.eos_id(), third};
  CpuEngine engine(model);
  GenerateOptions options = greedy_options(10);
  options.stop_at_eos = true;
  const auto result = run(engine, options);
  EXPECT_EQ(result.stop_reason, "eos");
  EXPECT_EQ(result.generated_ids, std::vector<int32_t>(plain.generated_ids.begin(),
                                                       plain.generated_ids.begin() + first_at));
}

TEST(Generate, StopsWhenTheCacheIsFull) {
  CpuEngine engine(tiny().model, 16);
  const auto result = run(engine, greedy_options(100));
  EXPECT_EQ(result.stop_reason, "max_positions");
  // The last token is sampled from the logits of position 15 and needs no forward of its own.
  EXPECT_EQ(result.prompt_ids.size() + result.generated_ids.size(), 17u);
}

TEST(Generate, PromptLongerThanTheCacheIsAnError) {
  CpuEngine engine(tiny().model, 16);
  const std::string prompt =
      "In the beginning God created the heaven and the earth. And the earth was without form";
  const size_t tokens = tiny().tokenizer.encode(prompt, true).size();
  ASSERT_GT(tokens, 16u);
  try {
    run(engine, greedy_options(5), nullptr, prompt);
    FAIL() << "no error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(std::to_string(tokens) + " tokens"), std::string::npos) << message;
    EXPECT_NE(message.find("16"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace q4jit
