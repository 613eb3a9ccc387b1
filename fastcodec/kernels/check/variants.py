"""The Triton variants to compile (kernel x config x dtype/precision x K walk x arch x pooling
window), their labels, and the pass/fail verdicts on the compiled resources."""

from __future__ import annotations

# Maximum shared memory per block (dynamic, opt-in) by compute capability.
SMEM_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}
DTYPE_NAMES = ("float32", "float16", "bfloat16")


def config_dict(cfg) -> dict:
    return {**{k: int(cfg.kwargs[k]) for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")},
            "num_warps": int(cfg.num_warps), "num_stages": int(cfg.num_stages)}


def config_label(c: dict) -> str:
    return f"{c['BLOCK_M']}x{c['BLOCK_N']}x{c['BLOCK_K']} w{c['num_warps']} s{c['num_stages']}"


def _footprint(cfg, constexprs, elsize) -> tuple:
    """Estimated per-thread registers (fp32 accumulator + one stage of A and B operands, in 32-bit
    words) and per-block shared memory: the ordering ``--quick`` uses to pick the riskiest
    config."""
    rows = cfg.kwargs["BLOCK_M"] * int(constexprs.get("WIN", 1))
    bn, bk, threads = cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_K"], 32 * cfg.num_warps
    regs = (rows * bn + (rows * bk + bk * bn) * elsize / 4) / threads
    smem = cfg.num_stages * (rows + bn) * bk * elsize
    return regs, smem


#: Pooling windows compiled besides the registry's representative 2x2 (``conv_relu_pool``): each
#: pooled pixel takes ``next_pow2(P*P)`` dot rows, so these need the small-BLOCK_M configs.
LARGE_POOL_SIZES = (3, 5, 7)


def variant_label(v: dict) -> str:
    """The kernel's name, with the pooling window when it is not the representative one."""
    return v["kernel"] + (f" pool {v['pool_size']}x{v['pool_size']}" if v.get("large_window")
                          else "")


def enumerate_variants(kernels=None, archs=(80, 90), dtypes=DTYPE_NAMES, quick=False,
                       sass: str = "sample") -> tuple[list, list]:
    """``(variants, notes)``: the Triton compilations to run (dicts, picklable).

    Per kernel x dtype x arch, the configs the registry's prune keeps at a large Cout for that
    arch's shared memory (``SMEM_LIMIT``); for ``conv_relu_pool`` the representative 2x2 window and
    each of ``LARGE_POOL_SIZES``, whose kept configs differ (mostly the small-BLOCK_M ones).
    ``sass``: which variants also get their SASS disassembled: ``"all"``, ``"none"`` or ``"sample"``
    (the first variant of each kernel x dtype/precision x arch).
    """
    import torch
    import triton

    from fastcodec.kernels.configs import KERNELS, smem_estimate

    variants, notes, dropped = [], [], {}
    for name, spec in KERNELS.items():
        if kernels and name not in kernels:
            continue
        for dtype, (_sig, base) in spec.signatures.items():
            dname = str(dtype).replace("torch.", "")
            if dname not in dtypes:
                continue
            elsize = torch.empty(0, dtype=dtype).element_size()
            windows = [{}]
            if "POOL" in base:
                windows += [{"POOL": p, "WIN": triton.next_power_of_2(p * p)}
                            for p in LARGE_POOL_SIZES]
            for window in windows:
                consts = {**base, **window}
                for arch in archs:
                    # Configs the registry's prune keeps at a large Cout (what a real layer can
                    # run).
                    allowed = spec.kept_configs(dtype, arch=arch, smem_limit=SMEM_LIMIT.get(arch),
                                                **window)
                    if not window:
                        for c in spec.configs:
                            if not any(c is a for a in allowed):
                                dropped.setdefault(
                                    (name, config_label(config_dict(c))), []
                                ).append(f"{dname} sm_{arch}")
                    precisions = ([True, False] if dtype == torch.float32
                                  else [bool(base.get("DOT_TF32", False))])
                    for tf32 in precisions:
                        cfgs = allowed
                        if quick and dtype != torch.float16:
                            cfgs = [max(allowed, key=lambda c: _footprint(c, consts, elsize))]
                        for cfg in cfgs:
                            for flat_k in (False, True):
                                tc = dtype != torch.float32 or tf32
                                variants.append({
                                    "kernel": name, "config": config_dict(cfg), "dtype": dname,
                                    "constexprs": {**window, "FLAT_K": flat_k, "DOT_TF32": tf32},
                                    "k_walk": "flat" if flat_k else "tap",
                                    "precision": (("tf32" if tf32 else "ieee")
                                                  if dtype == torch.float32 else dname),
                                    "arch": arch, "tensor_core_path": tc,
                                    "pool_size": consts.get("POOL"), "large_window": bool(window),
                                    "smem_estimate": smem_estimate(
                                        cfg, consts.get("WIN", 1), elsize, arch),
                                })
    for (name, label), where in dropped.items():
        notes.append(f"{name} {label}: dropped by prune for the representative call "
                     f"({', '.join(where)}), not compiled")
    if any(v["large_window"] for v in variants):
        notes.append("conv_relu_pool pool " + ", ".join(f"{p}x{p}" for p in LARGE_POOL_SIZES)
                     + ": only the configs the prune keeps for that window are compiled")
    seen = set()
    for v in variants:
        group = (v["kernel"], v["precision"], v["arch"])
        v["want_sass"] = sass == "all" or (sass == "sample" and group not in seen)
        seen.add(group)
    return variants, notes


def triton_verdict(r: dict) -> list[str]:
    """Failure reasons of one Triton variant (empty: pass)."""
    if "error" in r:
        return ["compile error: " + r["error"].splitlines()[0][:200]]
    why = []
    if r.get("registers") is None:
        why.append("no ptxas resource report")
    if r["spill_stores"] or r["spill_loads"]:
        why.append(f"spills {r['spill_stores']} B stores / {r['spill_loads']} B loads")
    limit = SMEM_LIMIT.get(r["arch"])
    if limit is not None and r["smem_bytes"] > limit:
        why.append(f"shared memory {r['smem_bytes']} B > {limit} B")
    if r.get("smem_estimate") is not None and r["smem_bytes"] > r["smem_estimate"]:
        why.append(f"shared memory {r['smem_bytes']} B > the prune's estimate "
                   f"{r['smem_estimate']} B")
    if r["wgmma_serialized"]:
        why.append("ptxas: wgmma serialized")
    if r["tensor_core_path"]:
        ptx, sass = r["ptx"], r.get("sass")
        if r["arch"] >= 90:
            if not ptx["wgmma"]:
                why.append("no wgmma in PTX" + (" (mma.sync instead)" if ptx["mma_sync"] else ""))
            elif sass is not None and not sass["HGMMA"]:
                why.append("no HGMMA in SASS")
        else:
            if not ptx["mma_sync"]:
                why.append("no mma.sync in PTX")
            elif not ptx["ldmatrix"]:
                why.append("mma.sync without ldmatrix in PTX")
            elif sass is not None and not sass["HMMA"]:
                why.append("no HMMA in SASS")
    return why


def cuda_verdict(k: dict, arch: int) -> list[str]:
    why = []
    if k.get("registers") is None:
        why.append("no ptxas resource report")
    if k["spill_stores"] or k["spill_loads"]:
        why.append(f"spills {k['spill_stores']} B stores / {k['spill_loads']} B loads")
    limit = SMEM_LIMIT.get(arch)
    if limit is not None and k["smem_bytes"] > limit:
        why.append(f"shared memory {k['smem_bytes']} B > {limit} B")
    return why


def matrix_flag(r: dict) -> str:
    if "error" in r:
        return "?"
    ptx, sass = r["ptx"], r.get("sass")
    if ptx["wgmma"]:
        s = "wgmma"
    elif ptx["mma_sync"]:
        s = "mma" + ("+ldm" if ptx["ldmatrix"] else "")
    else:
        s = "no"
    if sass is not None and s != "no":
        ok = sass["HGMMA"] if ptx["wgmma"] else sass["HMMA"]
        s += "" if ok else "(!sass)"
    return s
