// The Json value's helpers the bus's templates call (see coproc/json.hpp).
#include "coproc/json.hpp"

#include "json_text.hpp"

namespace coproc::detail {

namespace {
// Deep enough for any message people send; bounded so a hostile nesting
// cannot exhaust the stack (the rest goes to nlohmann's destructor).
constexpr int max_release_depth = 32;

void release_json(Json& value, int depth) noexcept {
    if (value.is_object()) {
        auto& members = value.get_ref<Json::object_t&>();
        if (depth < max_release_depth)
            for (auto& member : members)
                if (member.second.is_structured()) release_json(member.second, depth + 1);
        members.clear();
    } else if (value.is_array()) {
        auto& items = value.get_ref<Json::array_t&>();
        if (depth < max_release_depth)
            for (auto& item : items)
                if (item.is_structured()) release_json(item, depth + 1);
        items.clear();
    }
}
}  // namespace

void release_json(Json& value) noexcept { release_json(value, 0); }

std::string python_json_dumps(const Json& value) {
    std::string out;
    append_python_json(out, value);
    return out;
}

}  // namespace coproc::detail
