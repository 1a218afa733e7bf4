"""CLIP byte-pair tokenizer, read from the vocabulary file that `open_clip_torch` ships.

SEEM's reference tokenizes with Hugging Face's (slow) `CLIPTokenizer` for
`openai/clip-vit-base-patch32`, which it downloads at run time. The same BPE merges ship inside
the `open_clip` wheel as `bpe_simple_vocab_16e6.txt.gz`; this module rebuilds the identical
vocabulary from that file, so token ids match the reference and nothing is fetched:

    text -> ftfy.fix_text (when ftfy is installed) -> whitespace collapsed -> lowercase
         -> regex pre-tokenisation -> bytes mapped to printable characters -> BPE
         -> <|startoftext|> ids <|endoftext|>, truncated and padded to the context length.

Padding uses the end token (the reference's pad token), attention mask 1 on real tokens.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary: 256 bytes, 256 word-final bytes, merges, 2 specials


def vocab_path() -> Path:
    """The BPE file inside the installed `open_clip` package (pip install open_clip_torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the SEEM tokenizer needs the CLIP vocabulary from open_clip: pip install open_clip_torch")
    path = Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE
    if not path.is_file():
        raise ValueError(f"open_clip is installed but {path} is missing; reinstall open_clip_torch")
    return path


@functools.cache
def byte_to_char() -> dict[int, str]:
    """GPT-2/CLIP map from the 256 byte values to printable characters (no whitespace or
    control characters inside BPE symbols): printable Latin-1 bytes map to themselves, the
    others to code points from 256 upwards. The dict's order (printable bytes first, then the
    others, each in byte order) is the order of the first 256 vocabulary entries."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in kept]
    table = {b: chr(b) for b in kept}
    table.update({b: chr(256 + i) for i, b in enumerate(others)})
    return table


class ClipTokenizer:
    """Text -> (input_ids, attention_mask), each (N, context_length) int64, like the reference's
    `tokenizer(texts, padding='max_length', truncation=True, max_length=context_length)`."""

    def __init__(self, path: str | Path | None = None):
        import regex

        with gzip.open(path or vocab_path(), "rt", encoding="utf-8") as f:
            merges = [tuple(line.split()) for line in f.read().split("\n")[1 : N_MERGES + 1]]
        symbols = list(byte_to_char().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START_TOKEN, END_TOKEN]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.merge_rank = {pair: i for i, pair in enumerate(merges)}
        self.start_id = self.encoder[START_TOKEN]
        self.end_id = self.encoder[END_TOKEN]
        self.pad_id = self.end_id
        # words, single digits, runs of other non-space characters; English contractions apart
        self.pattern = regex.compile(
            r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
            regex.IGNORECASE,
        )
        try:
            import ftfy

            self._fix_text = ftfy.fix_text
        except ImportError:  # the reference likewise skips ftfy when it is missing
            self._fix_text = lambda text: text
        self._bpe_cache: dict[str, list[str]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def bpe(self, word: str) -> list[str]:
        """One pre-token (printable characters) -> its BPE symbols; the last carries '</w>'."""
        hit = self._bpe_cache.get(word)
        if hit is not None:
            return hit
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda p: self.merge_rank.get(p, float("inf")))
            if best not in self.merge_rank:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._bpe_cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without start/end tokens."""
        text = " ".join(self._fix_text(text).split()).lower()
        table = byte_to_char()
        ids = []
        for piece in self.pattern.findall(text):
            if piece in (START_TOKEN, END_TOKEN):
                ids.append(self.encoder[piece])
                continue
            word = "".join(table[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(word))
        return ids

    def __call__(self, texts: str | list[str], context_length: int = 77) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (input_ids, attention_mask), (N, context_length) int64: start token, ids
        truncated to context_length - 2, end token, then end tokens as padding (mask 0)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = np.full((len(texts), context_length), self.pad_id, np.int64)
        mask = np.zeros((len(texts), context_length), np.int64)
        for row, text in enumerate(texts):
            tokens = [self.start_id, *self.encode(text)[: context_length - 2], self.end_id]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask


@functools.cache
def default_tokenizer() -> ClipTokenizer:
    """One shared tokenizer (reading the vocabulary takes ~0.3 s)."""
    return ClipTokenizer()
