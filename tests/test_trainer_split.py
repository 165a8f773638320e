"""MicroBatch.split: chunks of rows whose completion tokens are contiguous slices of the batch's."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _batch():
    from trainer.batch import TokenSeq, collate

    prefix = list(range(100, 120))
    seqs = [
        TokenSeq([*prefix, 1, 2, 3, 4, 5], [22, 23, 24], [-0.1, None, -0.3], 0),
        TokenSeq([*prefix, 6, 7], [21], [-0.5], 1),
        TokenSeq([*prefix, 8, 9, 10, 11], [21, 23], [None, -0.2], 2),
        TokenSeq([*prefix, 12, 13, 14, 15, 16, 17], [24, 25], [-0.4, -0.6], 3),
        TokenSeq([*prefix, 18, 19, 20], [22], [-0.7], 4),
    ]
    return collate(seqs, pad_id=0, device=torch.device("cpu"))


@pytest.mark.parametrize("max_tokens", [1, 6, 12, 13, 18, 29, 30, 1000])
def test_chunks_partition_the_rows_and_their_tokens(max_tokens: int) -> None:
    mb = _batch()
    rows, width = mb.input_ids.shape
    assert mb.prefix_ids.numel() == 20 and width == 6
    lengths = mb.attention_mask.sum(dim=1).tolist()
    assert lengths == sorted(lengths)  # collate orders the rows by length
    chunks = mb.split(max_tokens)
    lo = 0
    for c in chunks:
        hi = lo + c.input_ids.shape[0]
        w = c.input_ids.shape[1]
        assert c.input_ids.numel() <= max_tokens or hi - lo == 1
        assert w == max(lengths[lo:hi])  # padded to its own longest row, not the batch's
        assert torch.equal(c.input_ids, mb.input_ids[lo:hi, :w]) and torch.equal(
            c.attention_mask, mb.attention_mask[lo:hi, :w]
        )
        assert not mb.attention_mask[lo:hi, w:].any()
        lo = hi
    assert lo == rows
    for field in ("next_ids", "sampler_logp", "has_sampler", "example"):
        assert torch.equal(torch.cat([getattr(c, field) for c in chunks]), getattr(mb, field))
    # every chunk's target positions point at the same token ids as the batch's
    picked = torch.cat([c.input_ids.flatten().index_select(0, c.target_index) for c in chunks])
    assert torch.equal(picked, mb.input_ids.flatten().index_select(0, mb.target_index))
    assert all(torch.equal(c.prefix_ids, mb.prefix_ids) for c in chunks)
    assert sum(c.tokens for c in chunks) == mb.tokens
    assert sum(c.computed_tokens for c in chunks) <= mb.computed_tokens
    if max_tokens >= rows * width:
        assert chunks == [mb]
