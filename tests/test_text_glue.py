"""GLUE-style text through Hugging Face datasets and a tokenizer (lth.data.text), pre-trained hf:DIR
models whose W0 is the pre-trained network (lth.models.hf_pretrained): a tiny BERT saved with
save_pretrained, a WordPiece vocab.txt and a GLUE-shaped sst2 saved with save_to_disk, all built
here (no network). Run: python -m pytest tests/test_text_glue.py -q"""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("datasets")
pytest.importorskip("transformers")

from lth import config, run                       # noqa: E402
from lth.data import sources, tokenizer           # noqa: E402
from lth.errors import LthError, cli_main         # noqa: E402
from lth.lottery import assemble                  # noqa: E402
from tests.runhelpers import env                  # noqa: E402

WORDS = "the a movie film plot actor scene story was is very quite really good great fine bad awful poor".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]     # [PAD] is id 0: lth's padding id
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            vocab_size=len(SPECIALS) + len(WORDS), max_position_embeddings=32)


def _rows(n: int, seed: int) -> dict:
    """Sentences of filler words with one sentiment word: label 1 for good/great/fine."""
    g = random.Random(seed)
    rows = {"sentence": [], "label": [], "idx": []}
    for i in range(n):
        words = [g.choice(WORDS[:12]) for _ in range(g.randint(3, 8))]
        words.insert(g.randint(0, len(words)), g.choice(["good", "great", "fine"] if i % 2 else ["bad", "awful", "poor"]))
        rows["sentence"].append(" ".join(words))
        rows["label"].append(i % 2)
        rows["idx"].append(i)
    return rows


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    """(root, vocab.txt, model dir): root/glue/sst2 as GLUE ships it (test labels hidden: -1)."""
    import datasets
    from transformers import BertConfig, BertModel
    root = tmp_path_factory.mktemp("glue")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + WORDS) + "\n")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"]),
                                  "idx": datasets.Value("int32")})
    test = _rows(16, 2)
    test["label"] = [-1] * 16
    datasets.DatasetDict(train=datasets.Dataset.from_dict(_rows(256, 0), features=features),
                         validation=datasets.Dataset.from_dict(_rows(64, 1), features=features),
                         test=datasets.Dataset.from_dict(test, features=features)).save_to_disk(str(root / "glue" / "sst2"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(BertConfig(**TINY)).save_pretrained(str(root / "tinybert"))
    return root, vocab, root / "tinybert"


@pytest.fixture(autouse=True)
def text_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_TEXT_CACHE", str(tmp_path / "text-cache"))
    return tmp_path / "text-cache"


def cfg_for(root, vocab, **overrides):
    return config.from_overrides({"dataset": "glue:sst2", "data_dir": str(root), "tokenizer": str(vocab),
                                  "max_length": 24, "model": "hf:bert", "layers": "all_but_output", **overrides})


def test_glue_task_tokenised_padded_with_zero_and_cached(glue, text_cache, caplog):
    root, vocab, _ = glue
    cfg = cfg_for(root, vocab)
    assert (cfg.data.image_size, cfg.data.augment, cfg.seeds.augment_seed) == (0, "none", None)
    with caplog.at_level("INFO"):
        ds = sources.load_config(cfg)
    assert "the validation split is the test split" in caplog.text
    assert ds.train_x.dtype == torch.int64 and ds.train_x.dim() == 2 and ds.num_classes == 2
    assert (len(ds.train_y), len(ds.test_y)) == (256, 64)                 # validation, not the hidden test
    first = ds.train_x[0].tolist()
    assert first[0] == SPECIALS.index("[CLS]") and SPECIALS.index("[SEP]") in first
    assert first[first.index(SPECIALS.index("[SEP]")) + 1:] == [0] * (len(first) - first.index(3) - 1)
    assert SPECIALS.index("[UNK]") not in ds.train_x                      # every word is in the vocabulary
    assert len(list(text_cache.glob("*.pt"))) == 1
    caplog.clear()
    with caplog.at_level("INFO"):
        again = sources.load_config(cfg)
    assert "read from" in caplog.text and torch.equal(again.train_x, ds.train_x)
    short = sources.load_config(cfg_for(root, vocab, max_length=6))
    assert short.train_x.shape[1] == 6 and len(list(text_cache.glob("*.pt"))) == 2


def test_pairs_from_csv_and_json_files(glue, tmp_path):
    """hf-text:DIR of train/validation files; two text columns are a sentence pair."""
    import pandas as pd
    root, vocab, _ = glue
    folder = tmp_path / "pairs"
    folder.mkdir()
    rows = _rows(20, 3)
    frame = pd.DataFrame({"a": rows["sentence"], "b": rows["sentence"][::-1], "gold": rows["label"]})
    frame.to_csv(folder / "train.csv", index=False)
    frame[:8].to_json(folder / "validation.jsonl", orient="records", lines=True)
    cfg = cfg_for(root, vocab, dataset=f"hf-text:{folder}", text_columns=("a", "b"), label_column="gold")
    ds = sources.load_config(cfg)
    assert (len(ds.train_y), len(ds.test_y), ds.num_classes) == (20, 8, 2)
    assert (ds.train_x[0] == SPECIALS.index("[SEP]")).sum() == 2         # [CLS] a [SEP] b [SEP]
    assert sources.facts(cfg) == (20, 8, 2, 1, 24)


def test_hash_covers_tokenizer_and_max_length(glue, tmp_path):
    root, vocab, _ = glue
    base = cfg_for(root, vocab)
    assert base.experiment_dict()["data"]["identity"]["tokenizer_sha256"] == tokenizer.tokenizer_sha256(str(vocab))
    assert cfg_for(root, vocab, max_length=16).hash() != base.hash()
    other = tmp_path / "vocab.txt"
    other.write_text("\n".join(SPECIALS + WORDS[::-1]) + "\n")       # same words, other ids
    same_bytes = tmp_path / "copy" / "vocab.txt"
    same_bytes.parent.mkdir()
    same_bytes.write_bytes(vocab.read_bytes())
    assert cfg_for(root, other).experiment_dict()["data"]["identity"] != base.experiment_dict()["data"]["identity"]
    assert cfg_for(root, same_bytes).experiment_dict()["data"]["identity"] == base.experiment_dict()["data"]["identity"]
    assert cfg_for(root, vocab, text_columns=("sentence",)).hash() != base.hash()
    image = config.from_overrides({}, preset="quick").experiment_dict()["data"]
    assert not set(image) & {"tokenizer", "max_length", "text_columns", "identity"}   # image runs keep their hashes


def test_pretrained_dir_is_w0_and_its_weights_are_hashed(glue, tmp_path):
    from safetensors.torch import load_file
    root, vocab, model_dir = glue
    with pytest.raises(LthError, match="needs --tokenizer"):    # a model dir without a tokenizer
        cfg_for(root, vocab, model=f"hf:{model_dir}", tokenizer="")
    cfg = cfg_for(root, vocab, model=f"hf:{model_dir}")
    ds = sources.load_config(cfg)
    model = assemble.build_model(cfg, ds, seed=0, device="cpu")
    saved = load_file(str(model_dir / "model.safetensors"))
    encoder = model.net.bert.state_dict()
    assert saved.keys() == encoder.keys() and all(torch.equal(saved[k], encoder[k]) for k in saved)
    head = model.net.classifier.weight.detach().clone()
    assert torch.equal(assemble.build_model(cfg, ds, seed=0, device="cpu").net.classifier.weight, head)
    assert not torch.equal(assemble.build_model(cfg, ds, seed=1, device="cpu").net.classifier.weight, head)
    identity = cfg.experiment_dict()["model"]["identity"]
    assert len(identity["weights_sha256"]) == 64
    changed = tmp_path / "changed"
    import shutil
    shutil.copytree(model_dir, changed)
    saved["pooler.dense.bias"] += 1
    from safetensors.torch import save_file
    save_file(saved, str(changed / "model.safetensors"), metadata={"format": "pt"})
    assert cfg_for(root, vocab, model=f"hf:{changed}").hash() != cfg.hash()
    tokenizer.tokenizer(str(vocab)).save_pretrained(str(changed))      # a dir with its tokenizer: the default
    own = cfg_for(root, vocab, model=f"hf:{changed}", tokenizer="")
    assert own.data.tokenizer == str(changed)
    assert tokenizer.tokenizer(str(changed))("the good movie")["input_ids"] == [2, 5, 18, 7, 3]


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "glue:nope"], "unknown GLUE task 'nope'"),
    (["--dataset", "glue:stsb"], "regression"),
    (["--text-columns", "review"], "no column 'review'"),
    (["--tokenizer", "/nonexistent/tokenizer"], "--tokenizer /nonexistent/tokenizer not found"),
    (["--dataset", "hf-text:{root}"], "is not a dataset"),
    (["--model", "hf:{root}"], "has no config.json"),
    (["--model", "hf:{root}/noweights"], "no weights"),
    (["--model", "hf:bert,hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32,vocab_size=8"],
     "beyond the 8-token vocabulary"),
    (["--max-length", "30", "--model", "hf:bert,hidden_size=16,num_hidden_layers=1,num_attention_heads=2,"
      "intermediate_size=32,max_position_embeddings=8"], "lower --max-length to 8"),
    (["--test-split", "test"], "hidden labels"),
    (["--model", "hf:{root}/tinybert", "--init", "glorot"], "overwrite the pre-trained weights"),
])
def test_bad_text_input_is_one_line_exit_2_nothing_written(glue, tmp_path, capsys, argv, message):
    root, vocab, model_dir = glue
    (root / "noweights").mkdir(exist_ok=True)
    (root / "noweights" / "config.json").write_text((model_dir / "config.json").read_text())
    argv = [a.replace("{root}", str(root)) for a in argv]
    base = ["--dataset", "glue:sst2", "--data-dir", str(root), "--tokenizer", str(vocab), "--max-length", "24",
            "--model", "hf:bert", "--layers", "all_but_output", "--steps", "2", "--rounds", "1",
            "--runs-root", str(tmp_path / "runs"), "--no-progress", "--device", "cpu"]
    code = cli_main(run.main, base + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not (tmp_path / "runs").exists()


def test_datasets_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)     # import datasets -> ImportError
    with pytest.raises(LthError, match=r"pip install 'lth\[text\]'"):
        sources.check("glue:sst2")


def test_two_round_imp_rewinds_to_the_pretrained_weights(glue, tmp_path, text_cache):
    """python -m lth.run: 2 IMP rounds of a pre-trained tiny BERT on the GLUE-shaped sst2; W0
    (init.pt) is the saved encoder, the ticket learns the task, and so do the stability
    analysis's two copies of it (about 10 s on 2 shared cores)."""
    from safetensors.torch import load_file
    from lth.runs.store import RunStore
    root, vocab, model_dir = glue
    argv = ["--dataset", "glue:sst2", "--data-dir", str(root), "--tokenizer", str(vocab), "--max-length", "24",
            "--model", f"hf:{model_dir}", "--layers", "all_but_output", "--scope", "global", "--schedule", "imp",
            "--restart", "rewind", "--rate", "0.2", "--rounds", "2", "--steps", "60", "--batch-size", "32",
            "--optimizer", "adamw", "--lr", "3e-3", "--run-dir", str(tmp_path / "run"), "--no-progress",
            "--device", "cpu"]
    done = subprocess.run([sys.executable, "-m", "lth.run", *argv], env={**env(), "LTH_TEXT_CACHE": str(text_cache)},
                          cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    store = RunStore(tmp_path / "run")
    w0 = store.load_init()
    saved = load_file(str(model_dir / "model.safetensors"))
    assert all(torch.equal(w0[f"net.bert.{k}"], saved[k]) for k in saved)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(meta["model_source"]["weights_sha256"]) == 64
    summaries = [store.load_summary(r) for r in (1, 2)]
    assert summaries[-1]["sparsity"] == pytest.approx(0.36, abs=1e-3)
    assert all(s["test_acc"] > 0.75 for s in summaries), [s["test_acc"] for s in summaries]
    # the stability analysis trains two copies of round 2's ticket (from the pre-trained W0) and
    # interpolates them: both copies learn the task
    from analysis import stability
    assert stability.main([str(tmp_path / "run"), "--rounds", "2", "--steps", "60", "--alphas", "3",
                           "--device", "cpu", "--no-progress", "--no-figures"]) == 0
    records = list((tmp_path / "run" / "stability" / "round_02").rglob("interpolation-*.json"))
    assert len(records) == 1, records
    copies = json.loads(records[0].read_text())["copies"]
    assert all(copies[c]["test_acc"] > 0.75 for c in "ab"), copies


def test_sentence_pairs_get_token_types_after_the_first_sep(glue):
    """BERT was pre-trained with segment ids: [CLS] a [SEP] b [SEP] is 0 0 0 1 1, padding 0."""
    root, vocab, model_dir = glue
    cfg = cfg_for(root, vocab, model=f"hf:{model_dir}")
    ds = sources.load_config(cfg)
    model = assemble.build_model(cfg, ds, seed=0, device="cpu")
    assert model.sep_token_id == SPECIALS.index("[SEP]")
    x = torch.tensor([[2, 5, 3, 7, 18, 3, 0, 0]])
    assert model.token_types(x).tolist() == [[0, 0, 0, 1, 1, 1, 0, 0]]
    with torch.no_grad():
        typed = model(x)
        model.sep_token_id = None      # all type 0: another input to a pre-trained BERT
        assert not torch.allclose(model(x), typed)
