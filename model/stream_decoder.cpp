// StreamDecoder: incremental detokenization at a bounded cost per token.
//
// decode(all ids) differs from the concatenation of per-id decodes in two ways only:
//  (1) a run of byte-fallback pieces is decoded as one byte string, and an incomplete UTF-8
//      sequence at its end comes out as U+FFFD until its last byte arrives;
//  (2) SentencePiece strips the leading space of the first visible piece of a text only.
// So the decoder keeps a window of ids since the last point where all text was final, holds back a
// trailing incomplete byte sequence, and once the text has begun decodes the window after a fixed
// anchor piece (whose own text is then cut off) so that (2) never applies inside it.
#include <algorithm>
#include <string>

#include "common/error.hpp"
#include "model/tokenizer.hpp"

namespace q4jit {

namespace {

// UTF-8 length announced by a lead byte; 1 for bytes that cannot start a longer sequence.
size_t sequence_length(uint8_t lead) {
  if (lead >= 0xF8) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

bool is_continuation(uint8_t byte) {
  return (byte & 0xC0) == 0x80;
}

// A visible piece with non-empty text that is not a byte: decode(anchor + ids) starts with
// decode(anchor) for any ids. -1 when the vocabulary has none (then the window never anchors).
int32_t find_anchor(const Tokenizer& tokenizer) {
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.is_control(id) || tokenizer.is_byte(id)) continue;
    if (!tokenizer.decode({id}).empty()) return id;
  }
  return -1;
}

}  // namespace

std::string StreamDecoder::decode_window(size_t count) const {
  if (!anchored_) return tokenizer_->decode({ids_.begin(), ids_.begin() + count});
  std::vector<int32_t> ids;
  ids.reserve(count + 1);
  ids.push_back(anchor_);
  ids.insert(ids.end(), ids_.begin(), ids_.begin() + count);
  return tokenizer_->decode(ids).substr(anchor_text_.size());
}

// How many trailing ids are bytes of a UTF-8 sequence that is still incomplete (0 to 3).
size_t StreamDecoder::held_back_ids() const {
  for (size_t back = 1; back <= std::min<size_t>(3, ids_.size()); ++back) {
    const int32_t id = ids_[ids_.size() - back];
    if (!tokenizer_->is_byte(id)) return 0;
    const uint8_t byte = tokenizer_->byte_value(id);
    if (is_continuation(byte)) continue;
    return back < sequence_length(byte) ? back : 0;
  }
  return 0;
}

// Called when everything decoded so far is final: the next ids decode independently of it.
void StreamDecoder::start_new_window() {
  const bool visible = std::any_of(ids_.begin(), ids_.end(),
                                   [this](int32_t id) { return !tokenizer_->is_control(id); });
  if (visible && !anchored_) {
    if (anchor_ < 0) anchor_ = find_anchor(*tokenizer_);
    if (anchor_ < 0) return;  // no anchor piece: keep decoding from the start
    anchor_text_ = tokenizer_->decode({anchor_});
    anchored_ = true;
  }
  ids_.clear();
  emitted_ = 0;
}

std::string StreamDecoder::push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) {
    throw Error("StreamDecoder: token id " + std::to_string(id) + " is outside the vocabulary");
  }
  ids_.push_back(id);
  const size_t held_back = held_back_ids();
  const std::string text = decode_window(ids_.size() - held_back);
  std::string released = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  emitted_ = std::max(emitted_, text.size());
  if (held_back == 0) start_new_window();
  return released;
}

std::string StreamDecoder::flush() {
  const std::string text = decode_window(ids_.size());
  std::string released = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  start_new_window();
  return released;
}

}  // namespace q4jit
