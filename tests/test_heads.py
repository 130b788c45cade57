"""Cosine classifier and margin softmax: exact margins, the theta+m>pi branch, gradients."""
import math

import pytest
import torch

from facenar.tasks.heads import CosineClassifier, MarginSoftmax


def test_cosine_classifier_is_scale_free():
    torch.manual_seed(0)
    head = CosineClassifier(8, 5)
    x = torch.randn(3, 8)
    out = head(x)
    assert out.shape == (3, 5) and out.abs().max() <= 1 + 1e-6
    assert torch.allclose(head(10 * x), out, atol=1e-6)


def test_arcface_target_logit_exact():
    theta = 1.0
    cosine = torch.tensor([[math.cos(theta), 0.3, -0.2]])
    out = MarginSoftmax("arcface", s=64, m2=0.5)(cosine, torch.tensor([0]))
    assert out[0, 0].item() == pytest.approx(64 * math.cos(theta + 0.5), rel=1e-6)
    assert torch.allclose(out[0, 1:], 64 * cosine[0, 1:])


def test_cosface_and_combined():
    cosine = torch.tensor([[0.2, 0.6]])
    labels = torch.tensor([1])
    assert MarginSoftmax("cosface", s=10, m3=0.4)(cosine, labels)[0, 1].item() == pytest.approx(2.0)
    theta = math.acos(0.6)
    got = MarginSoftmax("combined", s=1, m1=0.9, m2=0.4, m3=0.15)(cosine, labels)[0, 1].item()
    assert got == pytest.approx(math.cos(0.9 * theta + 0.4) - 0.15, rel=1e-5)
    with pytest.raises(ValueError):
        MarginSoftmax("cosface")
    with pytest.raises(ValueError):
        MarginSoftmax("sphereface")
    with pytest.raises(ValueError, match="combined"):
        MarginSoftmax("arcface", m3=0.2)


@pytest.mark.parametrize("kind,kw", [("arcface", {}), ("combined", dict(m1=1.0, m2=0.3, m3=0.2))])
def test_target_logit_monotone_beyond_pi(kind, kw):
    head = MarginSoftmax(kind, s=1, **kw)
    cosine = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    target = head.target_logit(cosine)
    assert torch.isfinite(target).all()
    steps = target[1:] - target[:-1]
    assert (steps > 0).all()  # strictly increasing in cos(theta): a worse angle never helps
    turn = torch.tensor([head.cos_turn - 1e-9, head.cos_turn + 1e-9], dtype=torch.float64)
    below, above = head.target_logit(turn).tolist()
    assert above - below == pytest.approx(0, abs=1e-6)  # continuous where theta + m2 reaches pi
    near_pi = torch.tensor([head.cos_turn - 1e-3], dtype=torch.float64)  # theta + m2 > pi
    assert head.target_logit(near_pi).item() < -1 - kw.get("m3", 0)


def test_ignored_rows_get_no_margin():
    cosine = torch.tensor([[0.5, 0.1], [0.3, 0.2]])
    out = MarginSoftmax()(cosine, torch.tensor([-1, 1]))
    assert torch.allclose(out[0], 64 * cosine[0])
    assert out[1, 1].item() < 64 * 0.2


def test_half_precision_input_gives_float32_logits():
    out = MarginSoftmax()(torch.tensor([[0.5, 0.1]], dtype=torch.bfloat16), torch.tensor([0]))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("kind,kw", [("arcface", {}), ("cosface", dict(m3=0.35)),
                                     ("combined", dict(m1=0.9, m2=0.4, m3=0.1))])
def test_gradcheck(kind, kw):
    torch.manual_seed(0)
    # angles away from the clamp; one target beyond the turn point (cos < cos(pi - m))
    cosine = torch.tensor([[0.7, -0.2, 0.1], [-0.95, 0.4, 0.3], [0.2, 0.5, -0.6]], dtype=torch.float64,
                          requires_grad=True)
    labels = torch.tensor([0, 0, -1])
    head = MarginSoftmax(kind, s=4.0, **kw)
    assert torch.autograd.gradcheck(lambda c: head(c, labels), (cosine,))
    embeddings = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    classifier = CosineClassifier(6, 4).double()
    assert torch.autograd.gradcheck(lambda e: head(classifier(e), torch.tensor([1, 3, 0])), (embeddings,))
