#!/usr/bin/env python3
"""Checks every #include of include/ and lib/ against ARCHITECTURE.md's layer
table: a file includes only files of its own layer or of layers below it,
plus the extra rules the page states. Every file of include/ and lib/ must be
in the table. Usage: check_layers.py SOURCE_ROOT. Exit 1 on any violation."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
table = (root / "ARCHITECTURE.md").read_text()

layer_of = {}  # path relative to root -> (number, name)
for m in re.finditer(r"^\| (\d+) \| ([a-z ]+) \| (.*?) \| .* \|$", table, re.M):
    number, name = int(m.group(1)), m.group(2).strip()
    for f in re.findall(r"`([^`]+)`", m.group(3)):
        path = f if f.startswith("lib/") else "include/" + f
        layer_of[path] = (number, name)
if not layer_of:
    sys.exit("check_layers: no layer table found in ARCHITECTURE.md")


def layer_names(*names):
    return {n for n, (_, name) in layer_of.items() if name in names}


# Rules beyond the order (ARCHITECTURE.md, "Rules the order alone does not say").
forbidden = {
    "processes": (layer_names("link", "messengers") - {"include/coproc/messenger_options.hpp"}),
    "shared state": layer_names("frames", "queues", "link", "messengers", "processes", "workers", "supervision"),
    "bus": layer_names("frames", "queues", "link", "messengers", "processes", "workers", "supervision"),
}

errors = []
files = sorted(p for d in ("include", "lib") for p in (root / d).rglob("*") if p.suffix in (".hpp", ".cpp"))
for p in files:
    rel = p.relative_to(root).as_posix()
    if rel not in layer_of:
        errors.append(f"{rel}: not in ARCHITECTURE.md's layer table")
        continue
    number, name = layer_of[rel]
    for line_no, line in enumerate(p.read_text().splitlines(), 1):
        m = re.match(r'\s*#include\s+[<"]([^">]+)[">]', line)
        if not m:
            continue
        inc = m.group(1)
        if inc.startswith("coproc/"):
            target = "include/" + inc
        elif (root / "lib" / inc).exists() and rel.startswith("lib/"):
            target = "lib/" + inc
        else:
            continue  # a system or third-party header
        if target not in layer_of:
            errors.append(f"{rel}:{line_no}: includes {inc}, which is not in the layer table")
            continue
        t_number, t_name = layer_of[target]
        if t_number > number:
            errors.append(f"{rel}:{line_no}: layer {number} ({name}) includes {inc} of layer {t_number} ({t_name}): upward")
        if target in forbidden.get(name, ()):
            errors.append(f"{rel}:{line_no}: {name} must not include {inc} ({t_name})")

for e in errors:
    print(e)
print(f"check_layers: {len(files)} files, {len(errors)} violation(s)")
sys.exit(1 if errors else 0)
