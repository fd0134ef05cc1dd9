"""Best effort (issue 14): the machine code the NVIDIA driver built from the study's modules.
bench/ceiling/dump-spirv.mjs compiles each module with the driver's shader disk cache pointed at
DIR/nvcache/<n>/; where the cache entries hold CUDA ELF images (e_machine 190), this carves them
out and reads their registers, shared memory, spills (cuobjdump --dump-resource-usage) and an
opcode histogram (nvdisasm): HMMA (tensor core), LDSM (ldmatrix) vs LDS (scalar shared loads),
LDG/STS (staging), BAR, LDL/STL (spills), SEL/ISETP (bounds checks). Prints one JSON line per
module; says so when nothing could be found (cache format, tools missing): never fails the run.

Usage: python3 bench/ceiling/sass.py DIR
"""
import collections
import json
import os
import re
import shutil
import struct
import subprocess
import sys

TOOLS = {t: shutil.which(t) or next((p for p in (f"/usr/local/cuda/bin/{t}",) if os.path.exists(p)), None) for t in ("cuobjdump", "nvdisasm")}
KEY = ("HMMA", "LDSM", "LDS", "STS", "LDG", "STG", "BAR", "LDL", "STL", "SEL", "ISETP", "IMAD", "BRA", "MOVM")


def carve(path):
    data = open(path, "rb").read()
    out = []
    for m in re.finditer(rb"\x7fELF\x02\x01", data):
        at = m.start()
        try:
            machine = struct.unpack_from("<H", data, at + 0x12)[0]
            shoff = struct.unpack_from("<Q", data, at + 0x28)[0]
            shentsize, shnum = struct.unpack_from("<HH", data, at + 0x3A)
        except struct.error:
            continue
        size = shoff + shentsize * shnum
        if machine == 190 and 0 < size <= len(data) - at:
            out.append(data[at:at + size])
    return out


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except Exception as e:  # a missing or failing tool is a finding, not a crash
        return f"error: {e}"


def main(root):
    index = {}
    spirv = os.path.join(root, "spirv.jsonl")
    if os.path.exists(spirv):
        for line in open(spirv):
            row = json.loads(line)
            index[str(row["index"])] = row
    cache_root = os.path.join(root, "nvcache")
    out_dir = os.path.join(root, "sass")
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.isdir(cache_root):
        print(json.dumps({"kind": "sass", "error": "no nvcache folder"}))
        return
    for n in sorted(os.listdir(cache_root), key=lambda s: int(s) if s.isdigit() else 0):
        files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(cache_root, n)) for f in fs]
        row = {"kind": "sass", "index": n, "tag": index.get(n, {}).get("tag"), "name": index.get(n, {}).get("name"), "cacheFiles": len(files), "cacheBytes": sum(os.path.getsize(f) for f in files)}
        elfs = [e for f in files for e in carve(f)]
        row["elfs"] = len(elfs)
        if not elfs:
            row["error"] = "no CUDA ELF image in the driver's cache entries (format not readable, or nothing cached)"
            print(json.dumps(row), flush=True)
            continue
        elf = max(elfs, key=len)  # the compute shader; small ones would be driver internals
        cubin = os.path.join(out_dir, f"{n}.cubin")
        open(cubin, "wb").write(elf)
        if TOOLS["cuobjdump"]:
            usage = run([TOOLS["cuobjdump"], "--dump-resource-usage", cubin])
            row["resourceUsage"] = " ".join(usage.split())[-400:]
            for field in ("REG", "STACK", "SHARED", "LOCAL"):
                m = re.search(rf"{field}:(\d+)", usage)
                if m:
                    row[field.lower()] = int(m.group(1))
        if TOOLS["nvdisasm"]:
            text = run([TOOLS["nvdisasm"], cubin])
            open(os.path.join(out_dir, f"{n}.sass"), "w").write(text)
            ops = collections.Counter(m.group(1).split(".")[0] for m in re.finditer(r"^\s+/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", text, re.M))
            row["instructions"] = sum(ops.values())
            row["ops"] = {k: ops.get(k, 0) for k in KEY}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ceiling-out")
