// The per-shape part of `q4jit bench`: for every GPTQ matmul shape of a model folder
// (tuner/model_shapes.hpp) and each M, the kernel the engine would run (tuner/matmul_choice.hpp:
// the tuned winner or the default) timed with tuner/measure.hpp's protocol on random weights of
// that shape, and its effective weight bandwidth against the measured HBM read ceiling.
// Not here: the whole-model numbers (bench_command.cpp), tuning, validation (the tuner's and the
// kernel tests' job: the bench times only configurations they check).
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tuner/autotuner.hpp"

namespace q4jit::cli {

struct MatmulTiming {
  int M = 0;
  std::string kernel;   // MatmulChoice::describe(): "gemv bt256... (tuned)"
  double us = 0;        // median per call
  double tbps = 0;      // weight bytes / time
  double fraction = 0;  // of the read ceiling
};

struct ShapeBench {
  TuneShape shape;           // projections ("q", "k,v", "qkv") and the key
  int64_t weight_bytes = 0;  // qweight + scales + qzeros (+ x_map when act-order)
  int weight_copies = 0;     // rotated so the weights come from HBM
  std::vector<MatmulTiming> rows;
};

struct MatmulBench {
  std::string device;
  double ceiling_tbps = 0;
  std::vector<ShapeBench> shapes;
};

struct MatmulBenchOptions {
  std::vector<int> rows = {1, 2, 4, 8, 16};
  std::string tuning_db;                             // file; empty: default_tuning_db_path()
  std::function<void(const std::string&)> progress;  // one line per shape; null: silent
};

// Needs a GPU; Error (one line) when there is none or the folder is not a GPTQ model.
MatmulBench bench_model_matmuls(const std::filesystem::path& model_dir,
                                const MatmulBenchOptions& options);

nlohmann::json to_json(const MatmulBench& bench);

}  // namespace q4jit::cli
