"""`lightrnn data list | fetch | prepare | encode | make-tiny`: the data stage from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="corpora: list, fetch, prepare, encode, make-tiny")
    commands = parser.add_subparsers(dest="data_command", metavar="STEP", required=True)

    listing = commands.add_parser("list", help="corpora and datasets in the registry")
    listing.set_defaults(func=_list)

    fetch = commands.add_parser("fetch", help="download and verify a corpus (resumable)")
    fetch.add_argument("corpus", help="corpus or dataset name (see `lightrnn data list`)")
    fetch.add_argument("--dest", type=Path, required=True, help="directory for the archive")
    fetch.add_argument("--url", help="mirror or cache to download from instead (http, https, file://)")
    fetch.add_argument("--sha256", help="expected sha256, replacing the registry's checksum")
    fetch.set_defaults(func=_fetch)

    prepare = commands.add_parser("prepare", help="archive -> OUT/{train,valid,test}.txt")
    prepare.add_argument("dataset", help="dataset name (see `lightrnn data list`)")
    prepare.add_argument("--raw", type=Path, required=True, help="directory holding the fetched archive")
    prepare.add_argument("--out", type=Path, required=True, help="output directory")
    prepare.set_defaults(func=_prepare)

    encode = commands.add_parser("encode", help="text -> OUT/vocab.tsv, OUT/{split}.npy, OUT/meta.json")
    encode.add_argument("--text", type=Path, required=True, help="directory written by `data prepare`")
    encode.add_argument("--out", type=Path, required=True, help="output directory")
    encode.add_argument("--dataset", help="vocabulary rule of this dataset (default: recorded by prepare)")
    limit = encode.add_mutually_exclusive_group()
    limit.add_argument("--min-count", type=int, help="keep training words seen at least N times")
    limit.add_argument("--max-vocab", type=int, help="keep the N most frequent entries, specials included")
    limit.add_argument("--vocab", type=Path, help="encode with this vocabulary instead of building one: a trained "
                       "model file (best.pt) or a vocab.tsv (its unk/eos from the meta.json beside it)")
    encode.set_defaults(func=_encode)

    tiny = commands.add_parser("make-tiny", help="write a tiny generated archive in the corpus's real layout")
    tiny.add_argument("corpus", help="ptb, wikitext2, wikitext103, aclw or billionw")
    tiny.add_argument("--dest", type=Path, required=True, help="output directory")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_make_tiny)


def _list(args: argparse.Namespace) -> int:
    from lightrnn.data.corpora import CORPORA, DATASETS, expected_checksum

    print("corpus\tformat\tbytes\tchecksum\turl")
    for corpus in CORPORA.values():
        checksum = "-" if corpus.archive_format == "manual" else expected_checksum(corpus) or "pinned on first download"
        size = corpus.size_bytes if corpus.size_bytes is not None else "?"
        url = corpus.urls[0] if corpus.urls else "manual: see docs/data.md"
        print(f"{corpus.name}\t{corpus.archive_format}\t{size}\t{checksum}\t{url}")
    print()
    print("dataset\tcorpus\tvocabulary rule")
    for dataset in DATASETS.values():
        rule = dataset.vocab
        print(f"{dataset.name}\t{dataset.corpus}\tcount>={rule.min_count}, unk {rule.unk}, eos {rule.eos}"
              + (f", also {' '.join(rule.extra_specials)}" if rule.extra_specials else ""))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    import logging

    from lightrnn.data.fetch import fetch

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(fetch(args.corpus, args.dest, url=args.url, sha256=args.sha256))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from lightrnn.data.prepare import prepare

    summary = prepare(args.dataset, args.raw, args.out)
    print(json.dumps({split: {k: v for k, v in s.items() if k != "members"} for split, s in summary["splits"].items()}))
    return 0


def _encode(args: argparse.Namespace) -> int:
    from lightrnn.data.encode import encode

    vocab = _fixed_vocab(args.vocab, args.text, args.dataset) if args.vocab is not None else None
    meta = encode(args.text, args.out, dataset=args.dataset, min_count=args.min_count, max_vocab=args.max_vocab,
                  vocab=vocab)
    print(json.dumps({key: meta[key] for key in ("dataset", "vocab_size", "tokens", "oov_rate")}))
    return 0


def _fixed_vocab(path: Path, text_dir: Path, dataset: str | None):
    """`--vocab`: a model file's vocabulary, or a vocab.tsv with the unk/eos of its meta.json (else of the
    dataset's rule, else <unk>/<eos>)."""
    from lightrnn.core.errors import DataError
    from lightrnn.data.encode import FixedVocab, _rule_for
    from lightrnn.data.encoded import read_vocab

    if path.is_dir():
        raise IsADirectoryError(f"--vocab {path} is a folder; pass {path / 'vocab.tsv'} or a model file")
    if not path.is_file():
        raise FileNotFoundError(f"--vocab {path} does not exist; pass a vocab.tsv or a model file (best.pt)")
    if path.suffix != ".tsv":
        from lightrnn.training.checkpoint import load_checkpoint, vocab_from_payload

        vocab = load_checkpoint(path).get("vocab")
        if vocab is None:
            raise DataError(f"--vocab {path} holds no vocabulary (an older checkpoint); pass the vocab.tsv of the "
                            f"data dir it was trained on")
        words, counts, unk, eos = vocab_from_payload(vocab)
        if eos is None:
            raise DataError(f"--vocab {path}: its vocabulary has no end-of-sentence token")
        return FixedVocab(list(zip(words, counts.tolist())), unk, eos, str(path))
    words, counts = read_vocab(path)
    meta_path = path.parent / "meta.json"
    if meta_path.is_file() and path.name == "vocab.tsv":
        from lightrnn.data.encoded import load_meta

        meta = load_meta(path.parent)  # checked: unk_token / eos_token are strings when present
        unk, eos = meta.raw.get("unk_token"), meta.raw.get("eos_token")
    else:
        _, rule = _rule_for(Path(text_dir), dataset, None, None)
        unk, eos = rule.unk, rule.eos
    if unk is not None and unk not in words:
        unk = None
    return FixedVocab(list(zip(words, counts.tolist())), unk, eos, str(path))


def _make_tiny(args: argparse.Namespace) -> int:
    from lightrnn.data.tiny import make_tiny_archive

    path, sha256 = make_tiny_archive(args.corpus, args.dest, seed=args.seed)
    print(f"{path}\t{sha256}")
    return 0
