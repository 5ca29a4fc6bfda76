// --gpu-split on the command line: generate, perplexity and bench explain it in --help; bad text
// and --device cpu with a split are one-line errors (exit 1) before any model runs, whatever the
// machine has. Running a split needs a GPU (tests/gpu_model/gpu_split_test.cpp).
#include <gtest/gtest.h>

#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

using test::CommandResult;
using test::run_q4jit;

std::string model_argument() {
  return " -m '" + test::default_model_dir().string() + "'";
}

TEST(CliGpuSplit, HelpExplainsTheSyntax) {
  for (const char* command : {"generate", "perplexity", "bench"}) {
    const CommandResult help = run_q4jit(std::string(command) + " --help");
    ASSERT_EQ(help.exit_code, 0) << command;
    EXPECT_NE(help.out.find("--gpu-split"), std::string::npos) << command;
    EXPECT_NE(help.out.find("0.5@0,8@0"), std::string::npos) << command;
  }
}

TEST(CliGpuSplit, BadTextIsAnErrorOnAnyDevice) {
  for (const char* device : {"auto", "gpu", "cpu"}) {
    const CommandResult result = run_q4jit("generate" + model_argument() + " -p hi -n 1 --device " +
                                           device + " --gpu-split 3,x");
    EXPECT_EQ(result.exit_code, 1) << device;
    EXPECT_EQ(result.err, "q4jit: error: --gpu-split: '3,x': 'x' is not a number\n") << device;
    EXPECT_TRUE(result.out.empty()) << result.out;
  }
}

TEST(CliGpuSplit, ASplitOnTheCpuIsAnError) {
  const CommandResult result =
      run_q4jit("bench" + model_argument() + " --device cpu --gpu-split 1,1 --gen-tokens 1");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("--gpu-split: splits layers over GPUs; --device cpu runs on none"),
            std::string::npos)
      << result.err;
}

}  // namespace
}  // namespace q4jit
