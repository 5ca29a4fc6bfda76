// Distinct matmul shapes of a model folder: projections grouped by shape, fused qkv / gate_up
// only when their permutations agree, fp16 models refused.
#include "tuner/model_shapes.hpp"

#include <gtest/gtest.h>

#include "model/synth.hpp"
#include "tests/support/test_support.hpp"

namespace q4jit {
namespace {

std::string describe(const std::vector<TuneShape>& shapes) {
  std::string text;
  for (const TuneShape& s : shapes) {
    text += std::to_string(s.shape.K) + "x" + std::to_string(s.shape.N) + " g" +
            std::to_string(s.shape.group_size) + (s.shape.act_order ? " act" : "") + " " +
            s.projections + "\n";
  }
  return text;
}

TEST(ModelShapes, TinyGptqModelWithFusedShapes) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 32, false);  // hidden 64, intermediate 160, kv 2 x 16
  EXPECT_EQ(describe(model_matmul_shapes(dir.path())),
            "64x32 g32 k,v\n"
            "64x64 g32 q,o\n"
            "64x128 g32 qkv\n"
            "64x160 g32 gate,up\n"
            "64x320 g32 gate_up\n"
            "160x64 g32 down\n");
}

// An act-order GPTQ model written with shared permutations (q, k, v share one, as do gate and
// up, as in real checkpoints) or with one per projection.
std::string act_order_projections(const std::filesystem::path& dir, bool shared) {
  SynthSpec spec;
  spec.config = tiny_config(4096);
  QuantizationConfig quantization;
  quantization.group_size = 32;
  quantization.desc_act = true;
  spec.config.quantization = quantization;
  spec.shared_act_order = shared;
  write_synthetic_model(dir, spec);
  const std::vector<TuneShape> shapes = model_matmul_shapes(dir);
  std::string projections;
  for (const TuneShape& shape : shapes) {
    // The engine runs act-order weights sorted, on sorted x: the problem is a plain one.
    EXPECT_FALSE(shape.shape.act_order) << describe(shapes);
    projections += shape.projections + ";";
  }
  for (const char* name : {"q", "k", "v", "o", "gate", "up", "down"}) {
    EXPECT_NE(projections.find(name), std::string::npos) << name;
  }
  return projections;
}

TEST(ModelShapes, ActOrderModelFusesOnlyEqualPermutations) {
  test::TempDir own, shared;
  const std::string separate = act_order_projections(own.path(), false);
  EXPECT_EQ(separate.find("qkv"), std::string::npos) << separate;
  EXPECT_EQ(separate.find("gate_up"), std::string::npos) << separate;
  const std::string fused = act_order_projections(shared.path(), true);
  EXPECT_NE(fused.find("qkv"), std::string::npos) << fused;
  EXPECT_NE(fused.find("gate_up"), std::string::npos) << fused;
}

TEST(ModelShapes, Fp16ModelHasNothingToTune) {
  test::TempDir dir;
  test::write_tiny_model(dir.path(), 0, false);
  try {
    model_matmul_shapes(dir.path());
    FAIL() << "expected an Error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("not a GPTQ model"), std::string::npos)
        << error.what();
  }
}

TEST(ModelShapes, DefaultFixtureModel) {
  const std::vector<TuneShape> shapes = model_matmul_shapes(test::default_model_dir());
  ASSERT_FALSE(shapes.empty());
  for (const TuneShape& shape : shapes) {
    EXPECT_EQ(shape.shape.group_size, 128) << describe(shapes);
    EXPECT_FALSE(shape.shape.act_order) << describe(shapes);  // act-order, tuned as sorted
  }
  std::printf("fixture model shapes:\n%s", describe(shapes).c_str());
}

}  // namespace
}  // namespace q4jit
