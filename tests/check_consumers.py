#!/usr/bin/env python3
"""coproc as a dependency, from three kinds of consuming project.

Installs a release build of coproc (library only) into a scratch prefix,
then builds and runs a messenger program and a bus program against it with
plain pkg-config and with CMake's find_package(coproc), and builds coproc as
a meson subproject with its bus disabled (checking that configuring it never
looked for ZeroMQ, nlohmann_json or Catch2). Usage: check_consumers.py SOURCE_ROOT
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

root = os.path.abspath(sys.argv[1])
consumers = os.path.join(root, "tests", "consumers")
failures = []


def run(cmd, cwd=None, env=None, timeout=900):
    result = subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"FAILED ({result.returncode}): {' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        raise SystemExit(1)
    return result.stdout


def expect(output, wanted, what):
    if wanted not in output:
        failures.append(f"{what}: expected {wanted!r} in {output!r}")
    else:
        print(f"ok: {what}: {output.strip()}")


with tempfile.TemporaryDirectory(prefix="coproc-consumers-") as scratch:
    prefix = os.path.join(scratch, "prefix")
    build = os.path.join(scratch, "build")
    # A user's build: release, no -Werror, library only.
    run(["meson", "setup", build, root, "--buildtype=release", f"--prefix={prefix}", "-Dtests=disabled",
         "-Dexamples=disabled", "-Dbench=disabled"])
    run(["ninja", "-C", build, "install"])
    libdir = run(["meson", "introspect", "--buildoptions", build])
    libdir = next(o["value"] for o in json.loads(libdir) if o["name"] == "libdir")
    libpath = os.path.join(prefix, libdir)

    # 1. Plain pkg-config; the programs find the prefix's libraries by RUNPATH,
    # only libcoproc-bus's directory given: it must find libcoproc itself.
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libpath, "pkgconfig"))
    for app, pc in (("messenger_app", "coproc"), ("bus_app", "coproc-bus")):
        flags = run(["pkg-config", "--cflags", "--libs", pc], env=env).split()
        exe = os.path.join(scratch, "pc_" + app)
        run(["g++", "-O1", os.path.join(consumers, app + ".cpp"), "-o", exe, "-Wl,--as-needed",
             f"-Wl,-rpath,{libpath}"] + flags, env=env)
        expect(run([exe]), "messenger: 49" if app == "messenger_app" else 'bus: greetings {"hello":"world"}',
               f"pkg-config {app}")

    # 2. CMake: find_package(coproc) with coproc::coproc and coproc::bus.
    cmake_build = os.path.join(scratch, "cmake-build")
    run(["cmake", "-S", os.path.join(consumers, "cmake"), "-B", cmake_build, f"-DCMAKE_PREFIX_PATH={prefix}",
         "-DCMAKE_BUILD_TYPE=Release"])
    run(["cmake", "--build", cmake_build, "-j", "2"])
    expect(run([os.path.join(cmake_build, "messenger_app")]), "messenger: 49", "cmake messenger_app")
    expect(run([os.path.join(cmake_build, "bus_app")]), 'bus: greetings {"hello":"world"}', "cmake bus_app")

    # 3. A meson subproject without the bus.
    project = os.path.join(scratch, "subproject")
    shutil.copytree(os.path.join(consumers, "meson_subproject"), project)
    shutil.copy(os.path.join(consumers, "messenger_app.cpp"), scratch)  # '../messenger_app.cpp'
    os.makedirs(os.path.join(project, "subprojects"))
    os.symlink(root, os.path.join(project, "subprojects", "coproc"))
    sub_build = os.path.join(scratch, "sub-build")
    log = run(["meson", "setup", sub_build, project])
    for dependency in ("libzmq", "nlohmann_json", "Catch2"):
        for line in log.splitlines():
            if dependency.lower() in line.lower() and "found: yes" in line.lower():
                failures.append(f"meson subproject without the bus looked up {dependency}: {line}")
    run(["ninja", "-C", sub_build])
    expect(run([os.path.join(sub_build, "messenger_app")]), "messenger: 49", "meson subproject messenger_app")

for f in failures:
    print("FAILED:", f)
sys.exit(1 if failures else 0)
