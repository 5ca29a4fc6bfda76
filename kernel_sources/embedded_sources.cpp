// Lookup in the embedded kernel sources and transitive resolution of their quoted includes.
#include "kernel_sources/embedded_sources.hpp"

#include <algorithm>
#include <set>

#include "common/error.hpp"

namespace q4jit {

const EmbeddedFile* find_embedded_file(std::string_view name) {
  for (const EmbeddedFile& file : embedded_files()) {
    if (file.name == name) return &file;
  }
  return nullptr;
}

std::vector<std::string> quoted_includes(std::string_view text) {
  std::vector<std::string> names;
  size_t line_start = 0;
  while (line_start < text.size()) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view line = text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] != '#') continue;
    line.remove_prefix(first + 1);
    line.remove_prefix(std::min(line.find_first_not_of(" \t"), line.size()));
    if (!line.starts_with("include")) continue;
    const size_t open = line.find('"');
    const size_t close = open == std::string_view::npos ? open : line.find('"', open + 1);
    if (close == std::string_view::npos) continue;
    names.emplace_back(line.substr(open + 1, close - open - 1));
  }
  return names;
}

std::vector<const EmbeddedFile*> embedded_includes(const EmbeddedFile& root) {
  std::set<std::string_view> seen = {root.name};
  std::vector<const EmbeddedFile*> found;
  std::vector<const EmbeddedFile*> pending = {&root};
  while (!pending.empty()) {
    const EmbeddedFile* current = pending.back();
    pending.pop_back();
    for (const std::string& name : quoted_includes(current->bytes)) {
      const EmbeddedFile* header = find_embedded_file(name);
      if (header == nullptr) {
        throw Error(std::string(current->name) + ": includes \"" + name +
                    "\", which is not among the embedded kernel sources");
      }
      if (seen.insert(header->name).second) {
        found.push_back(header);
        pending.push_back(header);
      }
    }
  }
  std::sort(found.begin(), found.end(),
            [](const EmbeddedFile* a, const EmbeddedFile* b) { return a->name < b->name; });
  return found;
}

}  // namespace q4jit
