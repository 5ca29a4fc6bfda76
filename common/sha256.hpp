// SHA-256 over bytes, through OpenSSL's libcrypto EVP interface (not a hand-written digest).
// Used for the embedded kernel sources' hashes and for compiled-kernel store keys and checksums.
// The incremental Sha256 lets a key hash several pieces without concatenating them first.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace q4jit {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  Sha256& update(std::string_view bytes);
  // Adds the length before the bytes, so ("ab","c") and ("a","bc") hash differently.
  Sha256& update_field(std::string_view bytes);
  // The digest; the object may not be updated afterwards.
  Sha256Digest finish();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

Sha256Digest sha256(std::string_view bytes);
std::string sha256_hex(std::string_view bytes);
std::string to_hex(const Sha256Digest& digest);

}  // namespace q4jit
