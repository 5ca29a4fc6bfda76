// A small SentencePiece tokenizer for synthetic models, trained in process with the installed
// SentencePiece trainer on a built-in English text (a few verses of Genesis, public domain), so a
// synthetic folder is complete with nothing downloaded. Its vocabulary is padded with control
// pieces up to the model's vocab_size, so every id a model can produce decodes. Not a useful
// tokenizer for real text: it exists so generate, perplexity and bench run on synthetic folders.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.hpp"
#include "model/synth.hpp"

namespace q4jit {

namespace {

constexpr const char* kTrainingText[] = {
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And the Spirit of God moved upon the face of the waters.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "And God called the light Day, and the darkness he called Night.",
    "And the evening and the morning were the first day.",
    "And God said, Let there be a firmament in the midst of the waters, and let it divide the "
    "waters from the waters.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9, 10, 100, 2048; punctuation: ( ) [ ] { } ' \" ! ? - + = * / .",
};

// Pieces the trainer always makes: unk, <s>, </s> and the 256 byte-fallback pieces.
constexpr int kFixedPieces = 3 + 256;
// Merges learned from the text; well under what it supports, so the vocabulary comes out exact.
constexpr int kLearnedPieces = 200;

class TextLines : public sentencepiece::SentenceIterator {
 public:
  bool done() const override { return index_ >= std::size(kTrainingText); }
  void Next() override { ++index_; }
  const std::string& value() const override { return line_ = kTrainingText[index_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  size_t index_ = 0;
  mutable std::string line_;
};

std::string control_pieces(int count) {
  std::string pieces;
  for (int i = 0; i < count; ++i) pieces += (i ? ",<unused" : "<unused") + std::to_string(i) + ">";
  return pieces;
}

}  // namespace

void write_synthetic_tokenizer(const std::filesystem::path& file, int vocab_size) {
  constexpr int kMinimum = 512;
  if (vocab_size < kMinimum)
    throw Error(file.string() + ": a synthetic tokenizer needs a vocabulary of at least " +
                std::to_string(kMinimum) + " pieces, not " + std::to_string(vocab_size));
  const std::unordered_map<std::string, std::string> options = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"character_coverage", "1.0"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"control_symbols", control_pieces(vocab_size - kFixedPieces - kLearnedPieces)},
      {"hard_vocab_limit", "false"},
      {"num_threads", "1"},
      {"minloglevel", "2"},  // the trainer's progress log would bury the command's own
  };
  TextLines lines;
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(options, &lines, &model);
  if (!status.ok())
    throw Error(file.string() + ": cannot train the tokenizer (" + status.ToString() + ")");
  sentencepiece::SentencePieceProcessor check;
  if (!check.LoadFromSerializedProto(model).ok() || check.GetPieceSize() != vocab_size)
    throw Error(file.string() + ": the trained tokenizer has " +
                std::to_string(check.GetPieceSize()) + " pieces, not " +
                std::to_string(vocab_size));
  std::ofstream out(file, std::ios::binary);
  out.write(model.data(), std::streamsize(model.size()));
  if (!out) throw Error(file.string() + ": cannot write");
}

}  // namespace q4jit
