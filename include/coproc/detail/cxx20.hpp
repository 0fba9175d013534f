// coproc/detail/cxx20.hpp — stops a build that is not C++20 with one clear
// line, before the hundreds of errors a C++17 compiler would print about
// concepts and std::span. Every public header includes it first. Internal.
#pragma once

#if __cplusplus < 202002L
#error "coproc needs C++20: compile with -std=c++20 (g++ 10 or newer)"
#endif
