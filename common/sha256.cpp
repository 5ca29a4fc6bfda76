// SHA-256 through OpenSSL EVP. Failures of EVP itself (out of memory) become q4jit::Error.
#include "common/sha256.hpp"

#include <openssl/evp.h>

#include "common/error.hpp"

namespace q4jit {

struct Sha256::Context {
  EVP_MD_CTX* evp = nullptr;
  ~Context() { EVP_MD_CTX_free(evp); }
};

Sha256::Sha256() : context_(std::make_unique<Context>()) {
  context_->evp = EVP_MD_CTX_new();
  Q4JIT_CHECK(context_->evp != nullptr, "EVP_MD_CTX_new: out of memory");
  Q4JIT_CHECK(EVP_DigestInit_ex(context_->evp, EVP_sha256(), nullptr) == 1,
              "EVP_DigestInit_ex: SHA-256 unavailable in libcrypto");
}

Sha256::~Sha256() = default;

Sha256& Sha256::update(std::string_view bytes) {
  Q4JIT_CHECK(EVP_DigestUpdate(context_->evp, bytes.data(), bytes.size()) == 1,
              "EVP_DigestUpdate: failed");
  return *this;
}

Sha256& Sha256::update_field(std::string_view bytes) {
  const uint64_t length = bytes.size();
  char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  update(std::string_view(prefix, 8));
  return update(bytes);
}

Sha256Digest Sha256::finish() {
  Sha256Digest digest{};
  unsigned int size = 0;
  Q4JIT_CHECK(EVP_DigestFinal_ex(context_->evp, digest.data(), &size) == 1 && size == 32,
              "EVP_DigestFinal_ex: failed");
  return digest;
}

Sha256Digest sha256(std::string_view bytes) {
  return Sha256().update(bytes).finish();
}

std::string sha256_hex(std::string_view bytes) {
  return to_hex(sha256(bytes));
}

std::string to_hex(const Sha256Digest& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(64);
  for (uint8_t byte : digest) {
    text += kDigits[byte >> 4];
    text += kDigits[byte & 15];
  }
  return text;
}

}  // namespace q4jit
