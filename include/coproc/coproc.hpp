// coproc/coproc.hpp — the umbrella header: includes every public part of
// libcoproc. The bus (libcoproc-bus) is not among them: include
// <coproc/bus.hpp> for it (its JSON headers cost every file that includes it).
#pragma once

#include "coproc/detail/cxx20.hpp"

#include "coproc/blob.hpp"
#include "coproc/channel.hpp"
#include "coproc/codec.hpp"
#include "coproc/data_message.hpp"
#include "coproc/error.hpp"
#include "coproc/messenger.hpp"
#include "coproc/messenger_options.hpp"
#include "coproc/pool.hpp"
#include "coproc/pool_options.hpp"
#include "coproc/priority.hpp"
#include "coproc/progress_line.hpp"
#include "coproc/queue.hpp"
#include "coproc/request_ctr.hpp"
#include "coproc/shared_memory.hpp"
#include "coproc/shared_value.hpp"
#include "coproc/unique_fd.hpp"
#include "coproc/worker_limits.hpp"
#include "coproc/worker_output.hpp"
#include "coproc/worker_main.hpp"
#include "coproc/worker_resource.hpp"
