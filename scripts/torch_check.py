#!/usr/bin/env python3
"""Load a gen LSTM/GRU/RNN checkpoint into torch.nn.{LSTM,GRU,RNN} unchanged and compare bpc.

    pip install torch safetensors
    python scripts/torch_check.py CHECKPOINT_DIR TEXT_FILE [--gen target/release/gen]

The checkpoint's parameter names and layouts are PyTorch's, so `load_state_dict(strict=True)` takes
model.safetensors as it is. The script scores TEXT_FILE the way `gen eval --format text` does (one
document per blank-line-separated paragraph; each scored from the zero state with <eor> as the first
input, predicting its characters and a closing <eor>), runs `gen eval` on the same file, and exits
non-zero if the two bits-per-character figures differ by more than 1e-4 (relative).
"""
import argparse, json, math, subprocess, sys
from pathlib import Path

import torch
from safetensors.torch import load_file


class CharRNN(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cell = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg["arch"]]
        self.embed = torch.nn.Embedding(cfg["vocab"], cfg["embed"])
        self.rnn = cell(cfg["embed"], cfg["hidden"], cfg["layers"], batch_first=True, dropout=cfg["dropout"])
        self.head = torch.nn.Linear(cfg["hidden"], cfg["vocab"])

    def forward(self, ids):
        out, _ = self.rnn(self.embed(ids))
        return self.head(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("text")
    ap.add_argument("--gen", default="target/release/gen")
    a = ap.parse_args()
    ckpt = Path(a.checkpoint)
    cfg = json.loads((ckpt / "config.json").read_text())
    if cfg["arch"] not in ("lstm", "gru", "rnn"):
        sys.exit(f"{cfg['arch']} has no torch.nn counterpart to check against")
    model = CharRNN(cfg).eval()
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=True)

    vocab = json.loads((ckpt / "tokenizer.json").read_text())["model"]["vocab"]
    eor, unk = vocab["<eor>"], vocab["<unk>"]
    text = Path(a.text).read_text().replace("\r\n", "\n")
    docs = [p.strip("\n") + "\n" for p in text.split("\n\n") if p.strip()]
    nll, count = 0.0, 0
    with torch.no_grad():
        for d in docs:
            ids = [eor] + [vocab.get(c, unk) for c in d] + [eor]
            x = torch.tensor([ids[:-1]])
            logp = torch.log_softmax(model(x)[0].double(), dim=-1)
            nll -= logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()
            count += len(ids) - 1
    torch_bpc = nll / count / math.log(2)

    out = subprocess.run([a.gen, "eval", "--checkpoint", str(ckpt), "--data", a.text, "--format", "text", "--json"],
                         check=True, capture_output=True, text=True).stdout
    gen_bpc = json.loads(out)["bpc"]
    rel = abs(torch_bpc - gen_bpc) / gen_bpc
    print(json.dumps({"torch_bpc": torch_bpc, "gen_bpc": gen_bpc, "rel_diff": rel, "docs": len(docs), "tokens": count}))
    sys.exit(0 if rel <= 1e-4 else 1)


if __name__ == "__main__":
    main()
