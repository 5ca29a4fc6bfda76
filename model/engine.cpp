// Engine's default greedy decoding (engine.hpp): one forward and one host argmax per step.
#include "model/engine.hpp"

#include "common/error.hpp"
#include "model/sampling.hpp"

namespace q4jit {

void Engine::check_greedy_steps(int count) const {
  Q4JIT_CHECK(count >= 0 && int64_t(position()) + count <= max_positions(),
              "decode_greedy: " + std::to_string(count) + " steps from position " +
                  std::to_string(position()) + " exceed max_positions " +
                  std::to_string(max_positions()));
}

std::vector<int32_t> Engine::decode_greedy(int32_t token, int count,
                                           const std::function<bool(int32_t)>& on_token) {
  check_greedy_steps(count);
  std::vector<int32_t> chosen;
  for (int step = 0; step < count; ++step) {
    token = argmax(forward(std::span<const int32_t>(&token, 1), false));
    chosen.push_back(token);
    if (on_token && !on_token(token)) break;
  }
  return chosen;
}

}  // namespace q4jit
