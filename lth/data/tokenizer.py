"""The tokenizer of a text dataset (--tokenizer; lth.data.text): loaded once, checked, hashed.

    tok = tokenizer("bert-base-uncased")      # a Hub name, a save_pretrained folder, or a vocab.txt
    tokenizer_sha256("models/bert/vocab.txt") # its content, for the run hash
    sep_token_id(name)                        # [SEP], when it marks segments with token types

A folder must hold tokenizer files (TOKENIZER_FILES): transformers 5 makes a tokenizer with an
empty vocabulary from a model's config alone, which would turn every word into [UNK]. A vocab.txt
is BERT's WordPiece (lower-casing). The tokenizer must pad with id 0, lth's padding id, which the
model's attention mask drops (lth.models.external.HFClassifier): BERT's do, RoBERTa's (1) are
refused.
"""
import functools
import hashlib
import json
from pathlib import Path
from typing import Optional

from lth.errors import LthError

# a folder holds a tokenizer when it has one of these (fast, WordPiece, BPE, SentencePiece)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


@functools.lru_cache(maxsize=4)
def tokenizer(name: str):
    """The tokenizer of --tokenizer, refused unless it pads with id 0 (lth's padding id)."""
    if not name:
        raise LthError("a text dataset needs --tokenizer: a tokenizer folder, a BERT vocab.txt, or a Hub name "
                       "(bert-base-uncased); an hf:DIR or Hub --model brings its own")
    try:
        import transformers
    except ImportError:
        raise LthError("--tokenizer needs transformers: pip install 'lth[text]'") from None
    path = Path(name).expanduser()
    try:
        if path.is_file():
            if path.suffix != ".txt":
                raise LthError(f"--tokenizer {name}: a file must be a WordPiece vocab.txt; give a tokenizer's folder")
            tok = _wordpiece(transformers, path)
        elif path.is_dir() and not has_tokenizer(path):
            raise LthError(f"--tokenizer {name}: the folder holds no tokenizer files ({', '.join(TOKENIZER_FILES)})")
        elif path.is_dir() or not name.startswith(("/", ".", "~")):
            tok = transformers.AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name)
        else:
            raise LthError(f"--tokenizer {name} not found: no such file or folder")
    except (OSError, ValueError) as e:
        raise LthError(f"--tokenizer {name} not found or not a tokenizer: "
                       f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__}") from None
    if len(tok.get_vocab()) <= len(tok.all_special_ids):   # transformers 5 makes one from a model's config alone
        raise LthError(f"--tokenizer {name} has no vocabulary beyond its special tokens")
    if tok.pad_token_id != 0:
        raise LthError(f"--tokenizer {name} pads with id {tok.pad_token_id}; lth's text datasets pad with id 0 "
                       f"(the model's attention mask drops it): use a tokenizer whose pad token is id 0 (BERT's)")
    return tok


def check_tokenizer(name: str) -> None:
    """A local tokenizer (or none) is refused now, with one line; a Hub name is loaded (network)
    with the data, when the run hashes its content: still before anything is written."""
    if not name or Path(name).expanduser().exists() or name.startswith(("/", ".", "~")):
        tokenizer(name)


def has_tokenizer(folder: Path) -> bool:
    """Whether a folder holds a tokenizer (save_pretrained writes one of these files)."""
    return any((folder / f).is_file() for f in TOKENIZER_FILES)


def _wordpiece(transformers, path: Path):
    """BERT's WordPiece tokenizer (lower-casing) over a vocab.txt, one token a line, id = line."""
    import inspect
    vocab = {line: i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())}
    # transformers 5 takes the vocabulary as `vocab` and silently ignores 4.x's `vocab_file`
    fast = transformers.BertTokenizerFast
    tok = (fast(vocab=vocab) if "vocab" in inspect.signature(fast.__init__).parameters
           else fast(vocab_file=str(path)))
    if len(tok.get_vocab()) != len(vocab):
        raise LthError(f"--tokenizer {path}: the tokenizer holds {len(tok.get_vocab())} tokens, the file "
                       f"{len(vocab)} distinct lines")
    return tok


@functools.lru_cache(maxsize=4)
def tokenizer_sha256(name: str) -> str:
    """The tokenizer's content (its vocabulary, normalisation and special tokens) by SHA-256."""
    tok = tokenizer(name)
    backend = getattr(tok, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tok.get_vocab(), sort_keys=True)
    return hashlib.sha256(f"{type(tok).__name__}\n{text}".encode()).hexdigest()


def sep_token_id(name: str) -> Optional[int]:
    """The tokenizer's separator id when it marks segments with token types (BERT's), else None."""
    tok = tokenizer(name)
    return tok.sep_token_id if "token_type_ids" in tok.model_input_names else None
