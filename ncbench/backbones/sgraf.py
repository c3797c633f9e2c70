"""``sgr`` and ``saf``: the SGRAF family's cross-attention similarity networks (spec §2.1–2.2),
vectorised over every image × caption pair of a chunk instead of the official per-caption loop.

Encoders (shared by both):
  image   per region ``Linear(D → 1024)`` (Xavier-uniform, zero bias), L2-normalised → ``(n, R, 1024)``;
  caption ``Embedding(V, 300)`` (U(±0.1)) → dropout 0.4 → Bi-GRU(1024), the two directions averaged,
          each word L2-normalised → ``(n, L, 1024)``; padded words are zero vectors, which is how
          ``score`` recovers each caption's length (a real word vector has norm 1).

Similarity of image ``i`` and caption ``c`` (a number in (0, 1)):
  1. globals by self-attention: VisualSA (BatchNorm over the region axis) and TextSA (valid words only);
  2. SCAN word→region attention: ``LeakyReLU_0.1(V Wᵀ)``, L2-normalised over the caption's words,
     softmax over regions of ``λ·A`` (λ = 9), attended context per word, L2-normalised;
  3. similarity vectors ``l2norm(W (x − y)²)`` for the global pair and every word → ``L + 1`` nodes;
  4. ``sgr``: 3 steps of graph reasoning (softmax over valid nodes), node 0 read out;
     ``saf``: attention filtration, ``l1norm(sigmoid(BN(Linear(N))))`` over valid nodes;
  5. ``sigmoid(Linear_256→1(s))``.

Padded words are masked everywhere (word-axis normalisation, TextSA, node softmax, filtration), so
every score equals the per-caption computation of the official code.

Intra-modal scores (``image_image_scores``, ``caption_caption_scores``) run the same head on
image–image and caption–caption pairs, as GSC (CVPR'24, ``forward_topology`` of its ``SGRAF.py``)
does: two images' nodes are their globals' and their regions' squared differences region by region
(no attention), each plus 1e-6; a query caption's words attend over the other caption's words
(SCAN with λ = 9, the other's padded words masked, its word vectors plus 1e-6), the global node's
squared difference plus 1e-6; then reasoning (or filtration) and the sigmoid score as above. GSC
takes ``sigmoid`` of the head's logit, which is what these return. SAF's BatchNorm in training
mode normalises with the statistics of each caption's scores against all images of the batch and
updates its running statistics once per caption in caption order, exactly as the loop does.

Memory: the ``(captions × images × words × 1024)`` intermediates are bounded by processing captions
in chunks of at most ``pair_chunk`` elements each.

Test-time scoring (``test_scores``: every image × every caption in eval mode, what evaluation ranks;
``score`` stays the training path, unchanged). Equal to ``score`` to float tolerance; restructured:
  * once per call: VisualSA globals and each image's region Gram matrix ``G = V Vᵀ`` ``(R × R)``;
    TextSA globals; SGR's folded step matrices (below, ``2S³`` FLOPs each);
  * captions grouped by length, so every tile is scored without padding or masks (the official
    loop also scores each caption's real words only; ``score`` pads to the longest);
  * cache-sized tiles of images × captions: every per-pair tensor of a tile stays within
    ``pair_chunk`` elements and, on the CPU, ``TEST_TILE`` (2²², 16 MB in float32: about 290 pairs,
    16 captions × 18 images, at the papers' widths), so a tile's ``L × E`` differences are written,
    squared and read by the local similarity map in the caches, not in memory (tiles of
    ``pair_chunk`` alone, 4,600 pairs and 256 MB there, cost 25 % more per pair);
  * attention: one ``(images·R) × (captions·L)`` product for the logits; ``‖context‖² = wᵀ G w``
    puts the context's L2 normalisation onto the R attention weights, so ``ĉ − word`` is one batched
    product with β = −1 (``baddbmm``) squared in place, then the local similarity map; the
    normalisations and activations of temporaries run in place;
  * SGR: ``q_i · k_j = n_i W_qᵀ W_k n_jᵀ + (b_q W_k) · n_j`` + terms constant in ``j`` (they cancel in
    the softmax over ``j``): one ``S × S`` matrix ``A = W_qᵀ W_k`` instead of the query and key maps,
    in one product with the node map (its bias moved before the mixing: the edges' rows sum to 1);
    the last step computes node 0 only, the one read out; SAF: BatchNorm with running statistics.
Per pair (R regions, L words, E embed, S sim, k steps; 2 FLOPs per multiply-add; matrix products
only, as ``FlopCounterMode`` counts them; bytes: every operation's output, views excluded):
  official   ``4RLE + 2LES + 2ES + 2S`` + SGR ``k(6(L+1)S² + 4(L+1)²S)`` / SAF ``4(L+1)S``
  ncbench    the same ``+ 2LR²`` (the norm), SGR ``(k−1)(4(L+1)S² + 4(L+1)²S) + 4S² + 4(L+1)S``
At the papers' widths (R 36, L 14, E 1024, S 256, k 3): SGR 28.3 → 18.6 MFLOP and 924 → 316 kB
written per pair; SAF 9.94 → 9.98 MFLOP and 693 → 190 kB (the official writes each ``L × E``
tensor several times: the repeated caption, transposed copies, the normalisations, the difference).
At ``synthetic-scenes`` widths (R 12, E 64, S 16): SGR 0.186 → 0.139 MFLOP, 68 → 28 kB; SAF 0.075 →
0.079 MFLOP, 48 → 17 kB. Where the time goes (SGR, papers' widths, 1 thread of an AMD EPYC,
about 250 µs a pair): the local similarity map and the reasoning's ``(L + 1) × S × 2S`` product
about 30 % each (both at the BLAS's full rate, ≈ 84 GFLOP/s), the context product 7 %, the
``(L + 1)²`` edge and mixing products 10 % (batched ``15 × 256 × 15`` products run at a sixth of
that rate; the official loop runs three steps of them), the attention logits 4 %, the rest
elementwise, the encoders' once-per-call work 4 %: 67 GFLOP/s over all its matrix products (17.3
MFLOP a pair at the mean 13 words). The official structure's 26.4 MFLOP run at 50–56 GFLOP/s
(470–520 µs a pair: its ``bmm`` of one caption against each image alone, 36 × 1024 × 14, its
copies and three full reasoning steps).
``benchmarks/test_kernels.py`` (``pair_costs``) measures the FLOPs and bytes, and times both
structures (``pytest benchmarks -k test_scores``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..registry import BACKBONES
from .base import Backbone, BackboneConfig, bigru_mean

EPS = 1e-8
INTRA_EPS = 1e-6  # what GSC adds to intra-modal differences (and to the caption attended over)
#: test-time scoring's cache-sized tiles on the CPU (``_test_tiles``): the largest per-tile tensor
#: (the word differences, pairs × L × E) holds at most this many elements (16 MB in float32;
#: ``pair_chunk`` bounds it too), over at most ``TEST_TILE_CAPTIONS`` captions: at the papers'
#: widths about 290 pairs, 16 captions × 18 images (4,600-pair tiles of 256 MB were 25 % slower
#: per pair). On an accelerator ``pair_chunk`` alone bounds a tile: its launches, not its caches,
#: set the cost of a small tile there.
TEST_TILE = 2**22
TEST_TILE_CAPTIONS = 16


def l2norm(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``x / (‖x‖ + 1e-8)`` as the official code writes it (zero vectors stay zero)."""
    return x / (x.pow(2).sum(dim, keepdim=True).sqrt() + EPS)


def _l2norm_(x: torch.Tensor) -> torch.Tensor:
    """``l2norm`` over the last axis in place, for a temporary the caller no longer needs."""
    return x.div_(torch.linalg.vector_norm(x, dim=-1, keepdim=True).add_(EPS))


def _xavier(module: nn.Module) -> None:
    """The official initialisation: every Linear U(±√6/√(in+out)) with zero bias; BatchNorm 1/0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            r = (6.0 / (m.in_features + m.out_features)) ** 0.5
            nn.init.uniform_(m.weight, -r, r)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@dataclass
class _TestImages:
    """The image side of test-time scoring: region embeddings ``(n, R, E)``, VisualSA globals
    ``(n, E)`` and each image's region Gram matrix ``(n, R, R)``."""

    regions: torch.Tensor
    glob: torch.Tensor
    gram: torch.Tensor

    def rows(self, i0: int, i1: int) -> "_TestImages":
        return _TestImages(self.regions[i0:i1], self.glob[i0:i1], self.gram[i0:i1])


@dataclass
class _TestCaptions:
    """Captions of one length ``L`` for test-time scoring: words ``(c, L, E)``, TextSA globals ``(c, E)``."""

    words: torch.Tensor
    glob: torch.Tensor

    def rows(self, c0: int, c1: int) -> "_TestCaptions":
        return _TestCaptions(self.words[c0:c1], self.glob[c0:c1])


@dataclass
class _FoldedSteps:
    """SGR's reasoning weights for test-time scoring, computed once per call: each step but the
    last as one ``(2S × S)`` weight and ``2S`` bias (folded query map ``Aᵀ`` above the node map), the
    last step's fold ``A``, shift ``u`` and node map."""

    inner: list[tuple[torch.Tensor, torch.Tensor]]
    fold: torch.Tensor
    shift: torch.Tensor
    node: nn.Linear


def _length_groups(lengths: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """``(length, caption indices)`` for each distinct caption length (a zero-length caption is
    scored as one word, as ``score`` does): every group is scored without padding or masks."""
    lengths = lengths.clamp_min(1)
    return [(int(n), torch.nonzero(lengths == n).flatten()) for n in torch.unique(lengths).tolist()]


def _softmax_keys(edges: torch.Tensor) -> torch.Tensor:
    """Softmax over the keys of ``(pairs, keys, queries)`` edge logits. The edges are built keys-first
    because a softmax over rows of ``L + 1`` ≈ 15 contiguous numbers is about 3× slower on the CPU
    than the same softmax over the second-last axis."""
    return torch.softmax(edges, dim=-2)


@dataclass
class SGRAFConfig(BackboneConfig):
    embed_dim: int = 1024
    word_dim: int = 300
    sim_dim: int = 256
    sgr_steps: int = 3
    lambda_softmax: float = 9.0
    dropout: float = 0.4
    num_regions: int = 36  # VisualSA's BatchNorm runs over the region axis, so the count is fixed
    pair_chunk: int = 2**26  # largest captions × images × words × embed_dim intermediate (elements)


class VisualSA(nn.Module):
    """Image global vector: regions weighted by their agreement with the mean region."""

    def __init__(self, dim: int, num_regions: int, dropout: float):
        super().__init__()
        self.local = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(num_regions), nn.Tanh(), nn.Dropout(dropout))
        self.glob = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.Tanh(), nn.Dropout(dropout))
        self.common = nn.Linear(dim, 1)

    def forward(self, regions: torch.Tensor) -> torch.Tensor:  # (n, R, E) → (n, E)
        weights = self.common(self.local(regions) * self.glob(regions.mean(1))[:, None]).squeeze(-1)
        return l2norm((torch.softmax(weights, dim=1)[..., None] * regions).sum(1))


class TextSA(nn.Module):
    """Caption global vector: valid words weighted by their agreement with the mean word."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.local = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Dropout(dropout))
        self.glob = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Dropout(dropout))
        self.common = nn.Linear(dim, 1)

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (n, L, E), (n, L) → (n, E)
        mean = (words * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).to(words.dtype)
        weights = self.common(self.local(words) * self.glob(mean)[:, None]).squeeze(-1)
        weights = torch.softmax(weights.masked_fill(~mask, float("-inf")), dim=1)
        return l2norm((weights[..., None] * words).sum(1))


class SGRAF(Backbone):
    """Shared encoders and the similarity pipeline up to the nodes; ``reason`` is SGR or SAF."""

    Config = SGRAFConfig

    def __init__(self, config: SGRAFConfig, vocab_size: int, feature_dim: int):
        super().__init__(config, vocab_size, feature_dim)
        e, s = config.embed_dim, config.sim_dim
        self.img_fc = nn.Linear(feature_dim, e)
        self.embed = nn.Embedding(vocab_size, config.word_dim)
        self.word_drop = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.word_dim, e, batch_first=True, bidirectional=True)
        self.v_att = VisualSA(e, config.num_regions, config.dropout)
        self.t_att = TextSA(e, config.dropout)
        self.sim_loc = nn.Linear(e, s)
        self.sim_glo = nn.Linear(e, s)
        self.sim_eval = nn.Linear(s, 1)
        _xavier(self)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self._compiled_pairs = None  # set by compile_kernels

    # -- encoders ------------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 3 or images.shape[1] != self.config.num_regions:
            raise DataError(f"{type(self).__name__.lower()} needs region features (n, {self.config.num_regions}, D); "
                            f"got shape {tuple(images.shape)} (global features: use vse_light or vse_inf)")
        return l2norm(self.img_fc(images))

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        words = bigru_mean(self.gru, self.word_drop(self.embed(tokens)), lengths)
        return l2norm(words)  # padded positions are 0 and stay 0

    # -- similarity ----------------------------------------------------------------------------
    @staticmethod
    def word_mask(cap_emb: torch.Tensor) -> torch.Tensor:
        """``(n, L)`` True for real words (nonzero vectors)."""
        return cap_emb.ne(0).any(-1)

    def score(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        """``(n_img, n_cap)`` similarities, every pair of a caption chunk at once."""
        mask = self.word_mask(cap_emb)
        longest = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
        cap_emb, mask = cap_emb[:, :longest], mask[:, :longest]
        img_glo, cap_glo = self.v_att(img_emb), self.t_att(cap_emb, mask)
        n_img = img_emb.shape[0]
        chunk = max(1, self.config.pair_chunk // max(1, n_img * longest * self.config.embed_dim))
        pairs = self._compiled_pairs or self._pairs
        cols = [pairs(img_emb, img_glo, cap_emb[c0:c0 + chunk], mask[c0:c0 + chunk], cap_glo[c0:c0 + chunk])
                for c0 in range(0, cap_emb.shape[0], chunk)]
        return torch.cat(cols, dim=1)

    def _pairs(self, img_emb, img_glo, cap, m, glo) -> torch.Tensor:
        """``(n_img, c)`` scores of every image with each of ``c`` captions (words ``cap``, mask ``m``,
        globals ``glo``): the hot path, a pure tensor function (what ``compile_kernels`` compiles)."""
        n_img, c, longest = img_emb.shape[0], cap.shape[0], cap.shape[1]
        # word→region attention logits for all pairs in one product: (c, n_img, R, L)
        attn = (img_emb.reshape(-1, img_emb.shape[-1]) @ cap.reshape(-1, cap.shape[-1]).T)
        attn = attn.view(n_img, img_emb.shape[1], c, longest).permute(2, 0, 1, 3)
        weights = self._attend(attn, m[:, None, None, :])
        context = l2norm(torch.einsum("cirl,ird->cild", weights, img_emb))
        return self._head(context, cap[:, None], img_glo[None], glo[:, None], m[:, None]).T  # (n_img, c)

    # -- test-time scoring (every image × every caption, eval mode) --------------------------------
    @torch.no_grad()
    def test_scores(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> torch.Tensor:
        """``(n_img, n_cap)`` test-time scores: ``score``'s values (to float tolerance) in eval mode,
        restructured as the module docstring's *Test-time scoring* says. In training mode, for a
        subclass that overrides ``score`` and for a SAF whose filtration BatchNorm keeps no running
        statistics it is ``score`` itself."""
        if self.training or type(self).score is not SGRAF.score or not self._test_path_applies():
            return self.score(img_emb, cap_emb)  # a subclass that scores otherwise keeps its own
        mask = self.word_mask(cap_emb)
        img, cap_glo, head = self._test_image_side(img_emb), self.t_att(cap_emb, mask), self._test_head()
        lengths = mask.sum(1)
        out = img_emb.new_empty(img_emb.shape[0], cap_emb.shape[0])
        for length, rows in _length_groups(lengths):
            cap = _TestCaptions(cap_emb[rows, :length], cap_glo[rows])
            for i0, i1, c0, c1 in self._test_tiles(img_emb.shape[0], len(rows), length, img_emb.device):
                out[i0:i1, rows[c0:c1]] = self._test_pairs(img.rows(i0, i1), cap.rows(c0, c1), head).to(out.dtype)
        return out

    def _test_path_applies(self) -> bool:
        """Whether eval mode scores without statistics of the scored block (SAF overrides this)."""
        return True

    def _test_image_side(self, img_emb: torch.Tensor) -> "_TestImages":
        """What the test-time scoring needs of the images alone, computed once per call."""
        return _TestImages(img_emb, self.v_att(img_emb), img_emb @ img_emb.transpose(1, 2))

    def _test_head(self):
        """What the reasoning needs of the weights alone, computed once per call (SGR: its folded
        step matrices); passed to ``_test_reason``."""
        return None

    def _test_tiles(self, n_img: int, n_cap: int, length: int, device: torch.device):
        """``(i0, i1, c0, c1)`` tiles of images × captions of ``length`` words such that every per-pair
        intermediate stays within ``pair_chunk`` elements and, on the CPU, ``TEST_TILE``: up to
        ``TEST_TILE_CAPTIONS`` captions (the attention's and the context product's width is captions
        × words), then as many images as fit. A pair's largest tensor is its ``L × E`` word
        differences (or, at unusual widths, its ``L × R`` attention, ``(L + 1) × 2S`` node products or
        ``(L + 1)²`` edges)."""
        cfg = self.config
        per_pair = max(length * cfg.embed_dim, length * cfg.num_regions, (length + 1) * max(2 * cfg.sim_dim, length + 1))
        bound = min(cfg.pair_chunk, TEST_TILE) if device.type == "cpu" else cfg.pair_chunk
        pairs = max(1, bound // per_pair)
        step_c = max(1, min(n_cap, TEST_TILE_CAPTIONS, pairs))
        step_i = max(1, min(n_img, pairs // step_c))
        for i0 in range(0, n_img, step_i):
            for c0 in range(0, n_cap, step_c):
                yield i0, min(i0 + step_i, n_img), c0, min(c0 + step_c, n_cap)

    def _test_pairs(self, img: "_TestImages", cap: "_TestCaptions", head) -> torch.Tensor:
        """``(n, c)`` scores of ``n`` images × ``c`` captions of the same length ``L`` (no padding,
        so no masks): the nodes of every pair, then ``_test_reason``."""
        n, r, e = img.regions.shape
        c, length, _ = cap.words.shape
        logits = (img.regions.reshape(n * r, e) @ cap.words.reshape(c * length, e).T).view(n, r, c, length)
        attn = _l2norm_(F.leaky_relu_(logits, 0.1)).mul_(self.config.lambda_softmax)  # over the caption's words
        weights = torch.softmax(attn, dim=1).view(n, r, c * length).transpose(1, 2)
        # ‖context‖² = wᵀ G w from the image's Gram matrix: the 1/‖context‖ scale goes onto the R
        # weights instead of the E-wide context, and ``ĉ − word`` is one batched product (β = −1)
        sq = (torch.bmm(weights, img.gram) * weights).sum(-1, keepdim=True)
        weights = weights / (sq.clamp_min_(0).sqrt_() + EPS)
        diff = torch.baddbmm(cap.words.reshape(1, c * length, e), weights, img.regions, beta=-1)
        local = _l2norm_(self.sim_loc(diff.square_())).view(n, c, length, -1)
        glob = _l2norm_(self.sim_glo((img.glob[:, None] - cap.glob[None]).square_()))
        nodes = torch.cat([glob[:, :, None], local], dim=2).flatten(0, 1)  # (n·c, L + 1, S)
        return torch.sigmoid(self.sim_eval(self._test_reason(nodes, head))).view(n, c)

    def _test_reason(self, nodes: torch.Tensor, head) -> torch.Tensor:
        """``reason`` on ``(pairs, nodes, S)`` with every node valid, in eval mode (``head``: what
        ``_test_head`` returned)."""
        raise NotImplementedError

    def compile_kernels(self) -> None:
        """Compile the pair scoring with ``torch.compile`` (shapes dynamic: captions vary in length)."""
        self._compiled_pairs = torch.compile(self._pairs, dynamic=True)

    def pair_scores(self, img_emb: torch.Tensor, cap_emb: torch.Tensor, block: int = 256) -> torch.Tensor:
        """``(n,)`` similarities of image ``k`` with caption ``k`` only (no cross pairs)."""
        mask = self.word_mask(cap_emb)
        img_glo, cap_glo = self.v_att(img_emb), self.t_att(cap_emb, mask)
        attn = torch.einsum("nrd,nld->nrl", img_emb, cap_emb)
        context = l2norm(torch.einsum("nrl,nrd->nld", self._attend(attn, mask[:, None, :]), img_emb))
        return self._head(context[:, None], cap_emb[:, None], img_glo[:, None], cap_glo[:, None], mask[:, None])[:, 0]

    def global_features(self, img_emb: torch.Tensor, cap_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean of an image's region embeddings and of a caption's valid word embeddings: BiCro's
        official ``glo_emb`` (its self-attention lines are commented out there; parity-tested)."""
        mask = self.word_mask(cap_emb).to(cap_emb.dtype)
        return img_emb.mean(dim=1), (cap_emb * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1)

    def signed(self, scores: torch.Tensor) -> torch.Tensor:
        """``tanh(z)`` of the head's logit ``z``, from the score ``s = σ(z)`` in closed form:
        ``tanh(z) = (2s − 1) / (s² + (1 − s)²)`` (exact, finite for every ``s`` in [0, 1])."""
        return (2 * scores - 1) / (scores.pow(2) + (1 - scores).pow(2))

    def nonnegative(self, scores: torch.Tensor) -> torch.Tensor:
        """The head's sigmoid scores, in [0, 1] already (CREAM's official weights use them as they are)."""
        return scores

    def _attend(self, attn: torch.Tensor, mask: torch.Tensor, source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """SCAN t2i weights from logits ``(..., R, L)``: normalised over valid words, softmax over regions
        (over the valid ones of ``source_mask`` ``(..., R, 1)`` when words of a caption are attended over)."""
        attn = l2norm(F.leaky_relu(attn, 0.1) * mask, dim=-1)
        if source_mask is not None:
            attn = attn.masked_fill(~source_mask, float("-inf"))
        return torch.softmax(attn * self.config.lambda_softmax, dim=-2)

    # -- intra-modal scores (GSC's ``forward_topology``) -------------------------------------------
    def _query_chunk(self, n: int, length: int) -> int:
        """Queries per chunk so that a ``(queries × n × length × embed_dim)`` intermediate stays
        within ``pair_chunk`` elements."""
        return max(1, self.config.pair_chunk // max(1, n * length * self.config.embed_dim))

    def image_image_scores(self, img_emb: torch.Tensor) -> torch.Tensor:
        """``[n, n]``: the head on every two images (nodes: regions compared region by region)."""
        glo, n = self.v_att(img_emb), img_emb.shape[0]
        mask = torch.ones(1, 1, img_emb.shape[1], dtype=torch.bool, device=img_emb.device)
        step = self._query_chunk(n, img_emb.shape[1])
        rows = [self._score_nodes((img_emb[None] - img_emb[q:q + step, None]).pow(2) + INTRA_EPS,
                                  (glo[None] - glo[q:q + step, None]).pow(2) + INTRA_EPS, mask)
                for q in range(0, n, step)]
        return torch.cat(rows).T  # rows were the queries

    def caption_caption_scores(self, cap_emb: torch.Tensor) -> torch.Tensor:
        """``[n, n]``: the head on every two captions (the query's words attend over the other's)."""
        mask = self.word_mask(cap_emb)
        longest = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
        cap_emb, mask = cap_emb[:, :longest], mask[:, :longest]
        glo, n = self.t_att(cap_emb, mask), cap_emb.shape[0]
        source = cap_emb + INTRA_EPS
        step = self._query_chunk(n, longest)
        rows = []
        for q in range(0, n, step):
            query, qmask = cap_emb[q:q + step], mask[q:q + step]
            attn = torch.einsum("nsd,qld->qnsl", source, query)  # (queries, others, their words, query words)
            weights = self._attend(attn, qmask[:, None, None, :], mask[None, :, :, None])
            context = l2norm(torch.einsum("qnsl,nsd->qnld", weights, source))
            rows.append(self._score_nodes((context - query[:, None]).pow(2),
                                          (glo[None] - glo[q:q + step, None]).pow(2) + INTRA_EPS, qmask[:, None]))
        return torch.cat(rows).T

    def _head(self, context, cap, img_glo, cap_glo, mask) -> torch.Tensor:
        """Nodes → reasoning → score. Shapes broadcast to ``(c, i, L, E)`` (context, cap),
        ``(c, i, E)`` (globals) and ``(c, i, L)`` (mask); returns ``(c, i)``."""
        return self._score_nodes((context - cap).pow(2), (img_glo - cap_glo).pow(2), mask)

    def _score_nodes(self, local_sq, global_sq, mask) -> torch.Tensor:
        """The head from the squared differences of the local pairs ``(c, i, L, E)`` and of the
        globals ``(c, i, E)``, valid local nodes ``mask`` (broadcast to ``(c, i, L)``); ``(c, i)``."""
        local = l2norm(self.sim_loc(local_sq))
        glob = l2norm(self.sim_glo(global_sq))
        nodes = torch.cat([glob[..., None, :].expand(*local.shape[:-2], 1, -1), local], dim=-2)
        node_mask = torch.cat([torch.ones_like(mask[..., :1]), mask], dim=-1).expand(nodes.shape[:-1])
        return torch.sigmoid(self.sim_eval(self.reason(nodes, node_mask))).squeeze(-1)

    def reason(self, nodes: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@BACKBONES.register("sgr")
class SGR(SGRAF):
    """Similarity Graph Reasoning: ``sgr_steps`` rounds of attention over the nodes, node 0 read out."""

    def __init__(self, config: SGRAFConfig, vocab_size: int, feature_dim: int):
        super().__init__(config, vocab_size, feature_dim)
        s = config.sim_dim
        self.steps = nn.ModuleList(
            nn.ModuleDict({"query": nn.Linear(s, s), "key": nn.Linear(s, s), "node": nn.Linear(s, s)})
            for _ in range(config.sgr_steps))
        _xavier(self.steps)

    def reason(self, nodes: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        keys_out = ~node_mask[..., None, :]
        for step in self.steps:
            edges = step["query"](nodes) @ step["key"](nodes).transpose(-1, -2)
            edges = torch.softmax(edges.masked_fill(keys_out, float("-inf")), dim=-1)
            nodes = F.relu(step["node"](edges @ nodes))
        return nodes[..., 0, :]

    def _test_head(self) -> "_FoldedSteps":
        """Each step's query and key maps folded into one ``S × S`` matrix ``A = W_qᵀ W_k`` and a
        key-side vector ``u = b_q W_k`` (the terms of ``q_i · k_j`` that do not depend on ``j`` cancel
        in the softmax over ``j``); for all but the last step, ``A`` beside the node map (one
        product gives each node's query ``n A + u`` and its mapped value ``W n + b``: the edges' rows
        sum to 1, so the node map's bias can go before the mixing)."""
        folded = [self._folded(step) for step in self.steps]
        inner = [(torch.cat([fold.T, step["node"].weight]), torch.cat([shift, step["node"].bias]))
                 for (fold, shift), step in zip(folded[:-1], self.steps)]
        return _FoldedSteps(inner, *folded[-1], self.steps[-1]["node"])

    def _test_reason(self, nodes: torch.Tensor, head: "_FoldedSteps") -> torch.Tensor:
        """The reasoning steps with the folded maps of ``head``; the last step computes node 0 only,
        the one read out."""
        s = nodes.shape[-1]
        for weight, bias in head.inner:
            both = F.linear(nodes, weight, bias)  # (pairs, nodes, 2S): queries, mapped values
            edges = _softmax_keys(torch.einsum("pks,pqs->pkq", nodes, both[..., :s]))  # (pairs, keys, queries)
            nodes = torch.bmm(edges.transpose(-1, -2), both[..., s:]).relu_()
        query = torch.addmm(head.shift, nodes[:, 0], head.fold)  # (pairs, S)
        edges = _softmax_keys(torch.bmm(nodes, query[:, :, None]))  # (pairs, keys, 1)
        return head.node(torch.bmm(edges.transpose(-1, -2), nodes)[:, 0]).relu_()

    @staticmethod
    def _folded(step: nn.ModuleDict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_qᵀ W_k, b_q W_k)`` of one reasoning step."""
        q, k = step["query"], step["key"]
        return q.weight.T @ k.weight, q.bias @ k.weight


@BACKBONES.register("saf")
class SAF(SGRAF):
    """Similarity Attention Filtration: nodes weighted by ``l1norm(sigmoid(BN(Linear(node))))``."""

    def __init__(self, config: SGRAFConfig, vocab_size: int, feature_dim: int):
        super().__init__(config, vocab_size, feature_dim)
        self.filter = nn.Linear(config.sim_dim, 1)
        self.filter_bn = nn.BatchNorm1d(1)
        _xavier(self.filter)
        _xavier(self.filter_bn)

    def reason(self, nodes: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        logits = self._per_caption_batchnorm(self.filter(nodes).squeeze(-1), node_mask)
        weights = torch.sigmoid(logits) * node_mask
        weights = weights / (weights.abs().sum(-1, keepdim=True) + EPS)
        return l2norm((weights[..., None] * nodes).sum(-2))

    def _test_path_applies(self) -> bool:
        return self.filter_bn.running_mean is not None  # else eval mode normalises with each block's statistics

    def _test_reason(self, nodes: torch.Tensor, head: None) -> torch.Tensor:
        """Filtration with the BatchNorm's running statistics (eval mode), every node valid."""
        bn = self.filter_bn
        logits = (self.filter(nodes).squeeze(-1) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        weights = torch.sigmoid(logits)
        weights = weights / (weights.sum(-1, keepdim=True) + EPS)
        return l2norm((weights[:, None] @ nodes)[:, 0])

    def _per_caption_batchnorm(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``BatchNorm1d(1)`` as the official loop applies it to one caption's ``(images, nodes)``
        block at a time: ``x`` is ``(c, i, N)``; statistics over each caption's valid entries."""
        bn = self.filter_bn
        if not (self.training and bn.track_running_stats) and bn.running_mean is not None:
            mean, var = bn.running_mean, bn.running_var
        else:
            m = mask.to(x.dtype)
            count = m.sum(dim=tuple(range(1, x.ndim)), keepdim=True)
            mean = (x * m).sum(dim=tuple(range(1, x.ndim)), keepdim=True) / count
            var = ((x - mean).pow(2) * m).sum(dim=tuple(range(1, x.ndim)), keepdim=True) / count
            if self.training and bn.track_running_stats:
                self._update_running_stats(mean.flatten().detach(), (var * count / (count - 1).clamp(min=1)).flatten().detach())
        return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias

    def _update_running_stats(self, means: torch.Tensor, unbiased_vars: torch.Tensor) -> None:
        """The running-average updates of ``len(means)`` successive BatchNorm calls, in one step."""
        bn, c = self.filter_bn, means.shape[0]
        mom = bn.momentum if bn.momentum is not None else 0.1
        decay = (1 - mom) ** torch.arange(c - 1, -1, -1, dtype=means.dtype, device=means.device)
        keep = (1 - mom) ** c
        bn.running_mean.mul_(keep).add_((mom * decay * means).sum())
        bn.running_var.mul_(keep).add_((mom * decay * unbiased_vars).sum())
        bn.num_batches_tracked.add_(c)
