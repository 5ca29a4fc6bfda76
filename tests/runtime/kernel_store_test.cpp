// The compiled-kernel store (cache/kernel_store.hpp): file names, the pinned format, validation
// of corrupt entries, eviction, clear, folder choice, and two processes writing at once.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

#include "cache/kernel_store.hpp"
#include "common/error.hpp"
#include "common/sha256.hpp"
#include "tests/runtime/runtime_test_support.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

namespace fs = std::filesystem;

StoredKernel sample_kernel(const std::string& seed_text, size_t binary_bytes = 1000) {
  StoredKernel kernel;
  kernel.key = {"rms_norm", "bt256.vw8.sr0", sha256_hex(seed_text), 90, false, "13-0"};
  std::mt19937 random(static_cast<uint32_t>(std::hash<std::string>()(seed_text)));
  kernel.binary.resize(binary_bytes);
  for (char& byte : kernel.binary) byte = static_cast<char>(random());
  kernel.lowered_names = {
      {"rms_norm_kernel<256, 8, false>", "_Z15rms_norm_kernelILi256ELi8ELb0EEvP6__halfPKS0_S3_if"}};
  kernel.log = "warning: nothing";
  return kernel;
}

struct CapturedWarnings {
  std::vector<std::string> lines;
  KernelStoreOptions options(const fs::path& dir, int64_t cap = int64_t{1} << 30) {
    KernelStoreOptions options;
    options.dir = dir;
    options.size_cap_bytes = cap;
    options.warn = [this](const std::string& line) { lines.push_back(line); };
    return options;
  }
};

TEST(KernelStore, FileNameSpellsTheKey) {
  const StoredKernel kernel = sample_kernel("a");
  EXPECT_EQ(kernel.key.file_name(), "rms_norm.bt256.vw8.sr0." + kernel.key.hash.substr(0, 16) +
                                        ".sm90.nvrtc13-0.v" + std::to_string(kStoreVersion) +
                                        ".cubin");
  StoreKey ptx = kernel.key;
  ptx.ptx = true;
  EXPECT_TRUE(ptx.file_name().ends_with(".compute90.nvrtc13-0.v1.ptx"));
  StoreKey bad = kernel.key;
  bad.config = "../escape";
  EXPECT_THROW(bad.file_name(), Error);
}

// Pins the serialized format. If this fails because the format changed on purpose, bump
// kStoreVersion (cache/kernel_store.hpp) and update the digest here.
TEST(KernelStore, FormatGolden) {
  StoredKernel kernel;
  kernel.key = {"fam", "cfg", std::string(64, 'a'), 80, false, "13-0"};
  kernel.binary = "BINARY";
  kernel.lowered_names = {{"k<1>", "_Z1kILi1EEvv"}};
  kernel.log = "log";
  const std::string bytes = serialize_stored_kernel(kernel);
  EXPECT_EQ(bytes.substr(0, 8), std::string("q4jitKS\n"));
  EXPECT_EQ(bytes.size(), 56u + 8 * 10 + 64 + 3 + 3 + 4 + 4 + 6 + 3 + 1 + 4 + 12);
  EXPECT_EQ(sha256_hex(bytes), "d7bd343cf6c4a64014c45916611a347d314af334b0db7e90e7f0084475257ef9");
  const StoredKernel parsed = parse_stored_kernel(bytes, "golden");
  EXPECT_EQ(parsed.key.hash, kernel.key.hash);
  EXPECT_EQ(parsed.key.sm, 80);
  EXPECT_EQ(parsed.binary, "BINARY");
  EXPECT_EQ(parsed.lowered_names, kernel.lowered_names);
  EXPECT_EQ(parsed.log, "log");
}

TEST(KernelStore, SavesAndLoads) {
  test::TempDir dir;
  CapturedWarnings warnings;
  const KernelStore store(warnings.options(dir.path()));
  const StoredKernel kernel = sample_kernel("roundtrip");
  EXPECT_FALSE(store.load(kernel.key).has_value());
  store.save(kernel);
  const auto loaded = store.load(kernel.key);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->binary, kernel.binary);
  EXPECT_EQ(loaded->lowered_names, kernel.lowered_names);
  EXPECT_TRUE(warnings.lines.empty());
  EXPECT_EQ(store.stats().entries, 1);
  EXPECT_EQ(store.stats().temporary_files, 0);
}

// Every way a stored file can be damaged is detected, reported in one line and removed.
TEST(KernelStore, CorruptEntriesAreRemovedWithAWarning) {
  test::TempDir dir;
  CapturedWarnings warnings;
  const KernelStore store(warnings.options(dir.path()));
  const StoredKernel kernel = sample_kernel("corrupt");
  const fs::path path = dir.path() / kernel.key.file_name();
  const std::string good = serialize_stored_kernel(kernel);
  std::vector<std::pair<std::string, std::string>> damages = {
      {"flipped payload byte", good.substr(0, 200) + char(good[200] ^ 1) + good.substr(201)},
      {"truncated", good.substr(0, good.size() - 10)},
      {"bad magic", "X" + good.substr(1)},
      {"empty", ""},
      {"appended", good + "junk"},
  };
  for (const auto& [what, bytes] : damages) {
    test::write_bytes(path, bytes);
    warnings.lines.clear();
    EXPECT_FALSE(store.load(kernel.key).has_value()) << what;
    ASSERT_EQ(warnings.lines.size(), 1u) << what;
    EXPECT_NE(warnings.lines[0].find("corrupt"), std::string::npos) << warnings.lines[0];
    EXPECT_EQ(warnings.lines[0].find('\n'), std::string::npos);
    EXPECT_FALSE(fs::exists(path)) << what;
  }
  // A whole entry under the right name but holding another key (a hash16 collision).
  StoredKernel other = sample_kernel("other");
  other.key.hash = kernel.key.hash.substr(0, 16) + std::string(48, '0');
  test::write_bytes(path, serialize_stored_kernel(other));
  EXPECT_FALSE(store.load(kernel.key).has_value());
  EXPECT_FALSE(fs::exists(path));
}

TEST(KernelStore, EvictsLeastRecentlyUsedBeyondTheCap) {
  test::TempDir dir;
  CapturedWarnings warnings;
  const size_t entry_bytes = serialize_stored_kernel(sample_kernel("0", 10000)).size();
  const KernelStore store(warnings.options(dir.path(), 3 * entry_bytes));
  std::vector<StoredKernel> kernels;
  for (int i = 0; i < 3; ++i) {
    kernels.push_back(sample_kernel(std::to_string(i), 10000));
    store.save(kernels.back());
    // Distinct, increasing last-use times without sleeping.
    fs::last_write_time(dir.path() / kernels.back().key.file_name(),
                        fs::file_time_type::clock::now() - std::chrono::hours(10 - i));
  }
  EXPECT_EQ(store.stats().entries, 3);
  kernels.push_back(sample_kernel("3", 10000));
  store.save(kernels.back());
  EXPECT_EQ(store.stats().entries, 3);
  EXPECT_FALSE(store.load(kernels[0].key).has_value());  // the oldest went
  for (int i = 1; i < 4; ++i) EXPECT_TRUE(store.load(kernels[i].key).has_value()) << i;
  EXPECT_TRUE(warnings.lines.empty());
}

TEST(KernelStore, ClearRemovesEverything) {
  test::TempDir dir;
  CapturedWarnings warnings;
  const KernelStore store(warnings.options(dir.path()));
  for (int i = 0; i < 4; ++i) store.save(sample_kernel("clear" + std::to_string(i)));
  test::write_bytes(dir.path() / "x.cubin.tmp.1.2", "partial");
  EXPECT_EQ(store.stats().temporary_files, 1);
  EXPECT_EQ(store.clear(), 5);
  EXPECT_EQ(store.stats().entries, 0);
  EXPECT_TRUE(store.list().empty());
}

TEST(KernelStore, FolderPrecedence) {
  test::ScopedEnv cache("Q4JIT_CACHE_DIR", "/tmp/q4jit-explicit");
  test::ScopedEnv xdg("XDG_CACHE_HOME", "/tmp/xdg");
  test::ScopedEnv home("HOME", "/home/someone");
  EXPECT_EQ(default_kernel_store_dir("/flag"), fs::path("/flag"));
  EXPECT_EQ(default_kernel_store_dir(), fs::path("/tmp/q4jit-explicit"));
  {
    test::ScopedEnv unset("Q4JIT_CACHE_DIR", std::nullopt);
    EXPECT_EQ(default_kernel_store_dir(), fs::path("/tmp/xdg/q4jit/kernels"));
    test::ScopedEnv unset_xdg("XDG_CACHE_HOME", std::nullopt);
    EXPECT_EQ(default_kernel_store_dir(), fs::path("/home/someone/.cache/q4jit/kernels"));
  }
}

// Two processes save overlapping entries at once under a cap that forces eviction: afterwards
// every entry parses, no temporary file is left, and the total respects the cap.
TEST(KernelStore, TwoProcessesWritingAtOnceLeaveItConsistent) {
  test::TempDir dir;
  const size_t entry_bytes = serialize_stored_kernel(sample_kernel("x", 5000)).size();
  const int64_t cap = static_cast<int64_t>(entry_bytes * 12);
  pid_t children[2];
  for (int child = 0; child < 2; ++child) {
    children[child] = ::fork();
    ASSERT_GE(children[child], 0);
    if (children[child] == 0) {
      int status = 0;
      try {
        KernelStoreOptions options;
        options.dir = dir.path();
        options.size_cap_bytes = cap;
        const KernelStore store(options);
        for (int i = 0; i < 40; ++i) {
          const StoredKernel kernel = sample_kernel(std::to_string(i % 20), 5000);
          store.save(kernel);
          if (!store.load(kernel.key)) status = 2;  // may be evicted by the other only later
        }
      } catch (...) {
        status = 3;
      }
      ::_exit(status);
    }
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_NE(WEXITSTATUS(status), 3);
  }
  CapturedWarnings warnings;
  const KernelStore store(warnings.options(dir.path(), cap));
  const StoreStats stats = store.stats();
  EXPECT_EQ(stats.temporary_files, 0);
  EXPECT_GT(stats.entries, 0);
  EXPECT_LE(stats.bytes, cap);
  for (const StoreEntryInfo& entry : store.list()) {
    EXPECT_NO_THROW(
        parse_stored_kernel(test::read_bytes(dir.path() / entry.file_name), entry.file_name));
  }
}

}  // namespace
}  // namespace q4jit
