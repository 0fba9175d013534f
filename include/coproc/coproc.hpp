// coproc/coproc.hpp — the umbrella header: includes every public part.
#pragma once

#include "coproc/blob.hpp"
#include "coproc/bus.hpp"
#include "coproc/channel.hpp"
#include "coproc/codec.hpp"
#include "coproc/error.hpp"
#include "coproc/messenger.hpp"
#include "coproc/priority.hpp"
#include "coproc/queue.hpp"
#include "coproc/request_ctr.hpp"
#include "coproc/shared_memory.hpp"
#include "coproc/shared_value.hpp"
#include "coproc/worker_main.hpp"
#include "coproc/worker_resource.hpp"
