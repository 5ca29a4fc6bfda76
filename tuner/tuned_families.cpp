// The three matmul paths behind TunedFamily (tuned_families.hpp).
#include "tuner/tuned_families.hpp"

#include <map>

#include "tuner/dequant_gemm_tuning.hpp"
#include "tuner/gemm_runner.hpp"
#include "tuner/q4_matmul_runner.hpp"
#include "tuner/q4_matmul_tuning.hpp"
#include "tuner/q4_mma_runner.hpp"
#include "tuner/q4_mma_tuning.hpp"

namespace q4jit {

namespace {

int64_t align256(int64_t bytes) {
  return (bytes + 255) / 256 * 256;
}

Q4MatmulOperands q4_operands(const MatmulOperands& operands) {
  return {operands.out,    operands.x,      operands.x_map,    operands.qweight,
          operands.scales, operands.qzeros, operands.workspace};
}

// Loaded kernels by config string, with what pruning after compiling said of each.
template <typename Kernel>
class LoadedKernels {
 public:
  bool has(const std::string& config) const { return kernels_.count(config) > 0; }
  const Kernel& at(const std::string& config) const { return kernels_.at(config).value(); }

  // Keeps `kernel`; when it loaded, prunes it from its function's attributes and occupancy.
  void keep(Backend& backend, const std::string& config, Result<Kernel> kernel,
            const Function* function, int block_threads, int64_t smem_bytes,
            const PostCompileLimits& limits) {
    if (kernel.ok() && function) {
      const int blocks = backend.max_active_blocks_per_sm(*function, block_threads, smem_bytes);
      pruned_[config] = prune_after_compile(config, backend.attributes(*function), blocks, limits);
    }
    kernels_.emplace(config, std::move(kernel));
  }

  std::optional<CandidateVerdict> verdict(const std::string& config) const {
    const auto kernel = kernels_.find(config);
    if (kernel == kernels_.end())
      return CandidateVerdict{config, TrialStatus::compile_failed, "not compiled"};
    if (!kernel->second.ok())
      return CandidateVerdict{config, TrialStatus::compile_failed, kernel->second.error().what()};
    const auto pruned = pruned_.find(config);
    return pruned == pruned_.end() ? std::nullopt : pruned->second;
  }

 private:
  std::map<std::string, Result<Kernel>> kernels_;
  std::map<std::string, std::optional<CandidateVerdict>> pruned_;
};

// What legal() refuses beyond the footprint's own checks, as a divisibility verdict.
void mark_illegal(CandidateFootprint& footprint, bool legal_here, const MatmulShapeKey& shape) {
  if (legal_here || !footprint.indivisible.empty()) return;
  footprint.indivisible =
      "not legal for K " + std::to_string(shape.K) + ", N " + std::to_string(shape.N);
}

class GemvFamily : public TunedFamily {
 public:
  GemvFamily(Backend& backend, KernelService& service, const PostCompileLimits& limits)
      : backend_(backend), service_(service), limits_(limits) {}
  MatmulPath path() const override { return MatmulPath::gemv; }
  std::string name() const override { return q4_matmul_family().name; }
  std::string source_hash() const override { return family_source_hash(q4_matmul_family()); }

  std::vector<CandidateFootprint> footprints(const MatmulShapeKey& shape,
                                             int bucket) const override {
    const Q4MatmulShape at = shape_at(shape, bucket);
    std::vector<CandidateFootprint> result;
    for (const Q4MatmulConfig& cfg : q4_matmul_candidates(at)) {
      result.push_back(q4_matmul_footprint(cfg, at));
      mark_illegal(result.back(), legal(cfg, device(), at), shape);
    }
    return result;
  }
  std::string default_config(const MatmulShapeKey& shape, int bucket) const override {
    const std::vector<Q4MatmulConfig> configs = space(device(), shape_at(shape, bucket));
    return configs.empty() ? "" : to_string(configs.front());
  }
  void load(const std::vector<std::string>& names, int jobs) override {
    std::vector<Q4MatmulConfig> configs;
    for (const std::string& name : names) {
      if (!loaded_.has(name)) configs.push_back(q4_matmul_configs_by_name().at(name));
    }
    std::vector<Result<Q4MatmulKernel>> kernels = load_q4_matmul(backend_, service_, configs, jobs);
    for (size_t i = 0; i < configs.size(); ++i) {
      const Function* function = kernels[i].ok() ? &kernels[i].value().matmul : nullptr;
      loaded_.keep(backend_, to_string(configs[i]), std::move(kernels[i]), function,
                   configs[i].block_threads, 0, limits_);
    }
  }
  std::optional<CandidateVerdict> verdict(const std::string& config) const override {
    return loaded_.verdict(config);
  }
  ScratchNeed scratch(const std::string& config, const MatmulShapeKey& shape,
                      int64_t M) const override {
    const Q4MatmulWorkspace layout =
        workspace(q4_matmul_configs_by_name().at(config), shape_at(shape, M));
    return {layout.bytes, layout.zeroed_bytes};
  }
  void launch(const std::string& config, const MatmulShapeKey& shape, int64_t M,
              const MatmulOperands& operands, StreamView stream) const override {
    launch_q4_matmul(backend_, loaded_.at(config), shape_at(shape, M), q4_operands(operands),
                     stream);
  }
  double tolerance(const std::string& config) const override {
    return q4jit::tolerance(q4_matmul_configs_by_name().at(config));
  }
  std::vector<CompileRequest> winner_requests(const std::string& config,
                                              const CompileTarget& target) const override {
    return {q4_matmul_winner_request(q4_matmul_configs_by_name().at(config), target)};
  }

 private:
  static Q4MatmulShape shape_at(const MatmulShapeKey& shape, int64_t M) {
    return {M, shape.K, shape.N, shape.group_size, shape.act_order};
  }
  const DeviceInfo& device() const { return backend_.current_device(); }
  Backend& backend_;
  KernelService& service_;
  PostCompileLimits limits_;
  LoadedKernels<Q4MatmulKernel> loaded_;
};

class MmaFamily : public TunedFamily {
 public:
  MmaFamily(Backend& backend, KernelService& service, const PostCompileLimits& limits)
      : backend_(backend), service_(service), limits_(limits) {}
  MatmulPath path() const override { return MatmulPath::mma; }
  std::string name() const override { return q4_mma_family().name; }
  std::string source_hash() const override { return family_source_hash(q4_mma_family()); }

  std::vector<CandidateFootprint> footprints(const MatmulShapeKey& shape,
                                             int bucket) const override {
    std::vector<CandidateFootprint> result;
    for (const Q4MmaConfig& cfg : q4_mma_configs())
      result.push_back(q4_mma_footprint(cfg, device(), shape_at(shape, bucket)));
    return result;
  }
  std::string default_config(const MatmulShapeKey& shape, int bucket) const override {
    const Q4MmaConfig cfg = q4_mma_default(device(), shape_at(shape, bucket));
    return legal(cfg, device(), shape_at(shape, bucket)) ? to_string(cfg) : "";
  }
  void load(const std::vector<std::string>& names, int jobs) override {
    std::vector<Q4MmaConfig> configs;
    for (const std::string& name : names) {
      if (!loaded_.has(name)) configs.push_back(q4_mma_configs_by_name().at(name));
    }
    if (!gather_) {  // the x gather of act-order shapes (engine: matmul_dispatch.cpp)
      Result<Q4MatmulKernel> gather =
          std::move(load_q4_matmul(backend_, service_, {Q4MatmulConfig{}}, 1).front());
      if (gather.ok()) gather_ = std::make_unique<Q4MatmulKernel>(gather.value());
    }
    std::vector<Result<Q4MmaKernel>> kernels = load_q4_mma(backend_, service_, configs, jobs);
    for (size_t i = 0; i < configs.size(); ++i) {
      const Q4MmaConfig& cfg = configs[i];
      const Function* function = kernels[i].ok() ? &kernels[i].value().function : nullptr;
      loaded_.keep(backend_, to_string(cfg), std::move(kernels[i]), function,
                   32 * cfg.warps_n * cfg.warps_k, q4_mma_smem_bytes(cfg), limits_);
    }
  }
  std::optional<CandidateVerdict> verdict(const std::string& config) const override {
    if (!gather_)
      return CandidateVerdict{config, TrialStatus::compile_failed, "the x gather did not load"};
    return loaded_.verdict(config);
  }
  // Act-order: the split-K area, then x gathered into the weights' row order [M, K].
  ScratchNeed scratch(const std::string& config, const MatmulShapeKey& shape,
                      int64_t M) const override {
    const int64_t bytes = workspace(q4_mma_configs_by_name().at(config), shape_at(shape, M)).bytes;
    if (!shape.act_order) return {bytes, bytes};
    return {align256(bytes) + M * shape.K * 2, bytes};
  }
  // As the engine runs it: for act-order, x is gathered once and the product runs unpermuted.
  void launch(const std::string& config, const MatmulShapeKey& shape, int64_t M,
              const MatmulOperands& operands, StreamView stream) const override {
    const Q4MmaKernel& kernel = loaded_.at(config);
    Q4MatmulOperands direct = q4_operands(operands);
    if (shape.act_order) {
      direct.x = operands.workspace +
                 uint64_t(align256(workspace(kernel.config, shape_at(shape, M)).bytes));
      direct.x_map = 0;
      LaunchGeometry gather;
      gather.grid = {unsigned((shape.K + 255) / 256), unsigned(M), 1};
      gather.block = {256, 1, 1};
      launch_kernel(backend_, gather_->gather, gather, stream, direct.x, operands.x, operands.x_map,
                    int(shape.K));
    }
    Q4MmaShape unpermuted = shape_at(shape, M);
    unpermuted.act_order = false;
    launch_q4_mma(backend_, kernel, unpermuted, direct, stream);
  }
  double tolerance(const std::string&) const override { return kQ4MmaTolerance; }
  // The gather's program too: the engine loads it for act-order shapes.
  std::vector<CompileRequest> winner_requests(const std::string& config,
                                              const CompileTarget& target) const override {
    return {q4_mma_winner_request(q4_mma_configs_by_name().at(config), target),
            q4_matmul_winner_request(Q4MatmulConfig{}, target)};
  }

 private:
  static Q4MmaShape shape_at(const MatmulShapeKey& shape, int64_t M) {
    return {M, shape.K, shape.N, shape.group_size, shape.act_order};
  }
  const DeviceInfo& device() const { return backend_.current_device(); }
  Backend& backend_;
  KernelService& service_;
  PostCompileLimits limits_;
  LoadedKernels<Q4MmaKernel> loaded_;
  std::unique_ptr<Q4MatmulKernel> gather_;  // its gather function, any config's program has it
};

class DequantGemmFamily : public TunedFamily {
 public:
  DequantGemmFamily(Backend& backend, KernelService& service, const PostCompileLimits& limits,
                    bool whole_gemm_space)
      : backend_(backend),
        service_(service),
        limits_(limits),
        whole_gemm_space_(whole_gemm_space) {}
  MatmulPath path() const override { return MatmulPath::dequant_gemm; }
  std::string name() const override { return kDequantGemmFamily; }
  std::string source_hash() const override { return dequant_gemm_source_hash(); }

  std::vector<CandidateFootprint> footprints(const MatmulShapeKey& shape,
                                             int bucket) const override {
    std::vector<CandidateFootprint> result;
    for (const DequantGemmConfig& cfg :
         dequant_gemm_candidates(device(), shape, bucket, whole_gemm_space_))
      result.push_back(dequant_gemm_footprint(cfg, device(), shape, bucket));
    return result;
  }
  std::string default_config(const MatmulShapeKey& shape, int bucket) const override {
    const auto candidates = dequant_gemm_candidates(device(), shape, bucket, false);
    return candidates.empty() ? "" : to_string(candidates.front());
  }
  void load(const std::vector<std::string>& names, int jobs) override {
    std::vector<DequantizeConfig> dequantize;
    std::vector<GemmConfig> gemm;
    for (const std::string& name : names) {
      const DequantGemmConfig cfg = parse_dequant_gemm(name).value();
      if (!dequantize_.has(to_string(cfg.dequantize))) dequantize.push_back(cfg.dequantize);
      if (!gemm_.has(to_string(cfg.gemm))) gemm.push_back(cfg.gemm);
    }
    auto dequantize_kernels = load_dequantize_q4(backend_, service_, dequantize, jobs);
    for (size_t i = 0; i < dequantize.size(); ++i) {
      const Function* function =
          dequantize_kernels[i].ok() ? &dequantize_kernels[i].value().function : nullptr;
      dequantize_.keep(backend_, to_string(dequantize[i]), std::move(dequantize_kernels[i]),
                       function, dequantize[i].block_threads, 0, limits_);
    }
    auto gemm_kernels = load_gemm_f16(backend_, service_, gemm, jobs);
    for (size_t i = 0; i < gemm.size(); ++i) {
      const Function* function = gemm_kernels[i].ok() ? &gemm_kernels[i].value().function : nullptr;
      gemm_.keep(backend_, to_string(gemm[i]), std::move(gemm_kernels[i]), function,
                 32 * gemm[i].warps_m * gemm[i].warps_n, gemm_f16_smem_bytes(gemm[i]), limits_);
    }
  }
  std::optional<CandidateVerdict> verdict(const std::string& config) const override {
    const DequantGemmConfig cfg = parse_dequant_gemm(config).value();
    std::optional<CandidateVerdict> found = dequantize_.verdict(to_string(cfg.dequantize));
    if (!found) found = gemm_.verdict(to_string(cfg.gemm));
    if (found) found->config = config;
    return found;
  }
  ScratchNeed scratch(const std::string& config, const MatmulShapeKey& shape,
                      int64_t M) const override {
    const GemmWorkspace gemm =
        workspace(parse_dequant_gemm(config).value().gemm, GemmShape{M, shape.K, shape.N});
    return {align256(gemm.bytes) + shape.N * shape.K * 2, gemm.bytes};
  }
  // The fp16 weight goes after the GEMM's workspace, as the engine lays it out.
  void launch(const std::string& config, const MatmulShapeKey& shape, int64_t M,
              const MatmulOperands& operands, StreamView stream) const override {
    const DequantGemmConfig cfg = parse_dequant_gemm(config).value();
    const GemmShape gemm_shape{M, shape.K, shape.N};
    const uint64_t weight =
        operands.workspace + uint64_t(align256(workspace(cfg.gemm, gemm_shape).bytes));
    launch_dequantize_q4(backend_, dequantize_.at(to_string(cfg.dequantize)),
                         {shape.K, shape.N, shape.group_size},
                         {weight, operands.qweight, operands.scales, operands.qzeros,
                          shape.act_order ? operands.sorted_of : 0},
                         stream);
    launch_gemm_f16(backend_, gemm_.at(to_string(cfg.gemm)), gemm_shape,
                    {operands.out, operands.x, weight, operands.workspace}, stream);
  }
  double tolerance(const std::string&) const override { return kDequantGemmTolerance; }
  std::vector<CompileRequest> winner_requests(const std::string& config,
                                              const CompileTarget& target) const override {
    return dequant_gemm_winner_requests(parse_dequant_gemm(config).value(), target);
  }

 private:
  const DeviceInfo& device() const { return backend_.current_device(); }
  Backend& backend_;
  KernelService& service_;
  PostCompileLimits limits_;
  bool whole_gemm_space_;
  LoadedKernels<DequantizeKernel> dequantize_;
  LoadedKernels<GemmKernel> gemm_;
};

}  // namespace

std::unique_ptr<TunedFamily> make_tuned_family(MatmulPath path, Backend& backend,
                                               KernelService& service,
                                               const PostCompileLimits& limits,
                                               bool whole_gemm_space) {
  switch (path) {
    case MatmulPath::gemv:
      return std::make_unique<GemvFamily>(backend, service, limits);
    case MatmulPath::mma:
      return std::make_unique<MmaFamily>(backend, service, limits);
    case MatmulPath::dequant_gemm:
      return std::make_unique<DequantGemmFamily>(backend, service, limits, whole_gemm_space);
  }
  return nullptr;
}

}  // namespace q4jit
