// q4jit devices: the GPUs and their properties, the driver and NVRTC versions and NVRTC's
// architectures; "no GPU" with the reason when there is none (a normal state, exit code 0).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "runtime/platform.hpp"

namespace q4jit::cli {

namespace {

double peak_bandwidth_gbs(const DeviceInfo& info) {
  // Double data rate: two transfers per clock over the bus width.
  return 2.0 * info.memory_clock_khz * 1e3 * info.memory_bus_width_bits / 8 / 1e9;
}

nlohmann::json device_json(const DeviceInfo& info) {
  return {
      {"ordinal", info.ordinal},
      {"name", info.name},
      {"uuid", info.uuid},
      {"compute_capability", std::to_string(info.cc_major) + "." + std::to_string(info.cc_minor)},
      {"sm", info.sm()},
      {"sm_count", info.sm_count},
      {"max_threads_per_block", info.max_threads_per_block},
      {"smem_per_block", info.smem_per_block},
      {"smem_per_block_optin", info.smem_per_block_optin},
      {"smem_per_sm", info.smem_per_sm},
      {"l2_bytes", info.l2_bytes},
      {"global_memory_bytes", info.global_memory_bytes},
      {"memory_clock_khz", info.memory_clock_khz},
      {"memory_bus_width_bits", info.memory_bus_width_bits},
      {"peak_bandwidth_gbs", peak_bandwidth_gbs(info)},
      {"driver_version", info.driver_version}};
}

std::string version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

void print_device(const DeviceInfo& info) {
  std::printf("GPU %d           %s (%s)\n", info.ordinal, info.name.c_str(), info.uuid.c_str());
  std::printf("  arch          sm_%d, %d SMs, %d threads per block\n", info.sm(), info.sm_count,
              info.max_threads_per_block);
  std::printf("  memory        %.1f GiB, %lld MHz x %d-bit (%.0f GB/s peak)\n",
              info.global_memory_bytes / double(1 << 30),
              static_cast<long long>(info.memory_clock_khz / 1000), info.memory_bus_width_bits,
              peak_bandwidth_gbs(info));
  std::printf(
      "  caches        L2 %.1f MiB, shared %lld KiB per block (%lld KiB opt-in), %lld KiB per SM\n",
      info.l2_bytes / double(1 << 20), static_cast<long long>(info.smem_per_block / 1024),
      static_cast<long long>(info.smem_per_block_optin / 1024),
      static_cast<long long>(info.smem_per_sm / 1024));
}

std::string arch_list(const std::vector<int>& archs) {
  std::string text;
  for (int arch : archs) text += (text.empty() ? "sm_" : ", sm_") + std::to_string(arch);
  return text;
}

}  // namespace

void add_devices_command(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  CLI::App* command = app.add_subcommand(
      "devices",
      "List the GPUs and their properties, the driver and NVRTC versions and the "
      "architectures NVRTC can compile for; says why when there is no GPU");
  command->add_flag("--json", *json, "Print one JSON object instead of text");
  command->callback([json] {
    nlohmann::json out;
    auto backend = open_gpu_backend();
    std::vector<DeviceInfo> devices;
    if (backend) {
      for (int i = 0; i < backend.value()->device_count(); ++i) {
        devices.push_back(backend.value()->device_info(i));
      }
    }
    auto compiler = open_compiler();
    if (*json) {
      out["gpus"] = nlohmann::json::array();
      for (const DeviceInfo& info : devices) out["gpus"].push_back(device_json(info));
      out["gpu_unavailable"] = backend ? nlohmann::json() : nlohmann::json(backend.error().what());
      if (compiler) {
        const Compiler& c = *compiler.value();
        out["compiler"] = {{"name", c.description()},
                           {"archs", c.supported_archs()},
                           {"headers_dir", c.headers_dir()},
                           {"headers_version", c.headers_version()}};
      } else {
        out["compiler"] = {{"unavailable", compiler.error().what()}};
      }
      std::printf("%s\n", out.dump().c_str());
      return;
    }
    if (!devices.empty()) {
      std::printf("driver          CUDA %s\n",
                  version_text(devices.front().driver_version).c_str());
      for (const DeviceInfo& info : devices) print_device(info);
    } else {
      std::printf("%s\n", backend.error().what());
    }
    if (compiler) {
      const Compiler& c = *compiler.value();
      std::printf("compiler        %s, headers %s (%s)\n", c.description().c_str(),
                  c.headers_dir().c_str(), c.headers_version().c_str());
      std::printf("architectures   %s\n", arch_list(c.supported_archs()).c_str());
    } else {
      std::printf("compiler        unavailable: %s\n", compiler.error().what());
    }
  });
}

}  // namespace q4jit::cli
