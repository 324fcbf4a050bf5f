"""AAM -> box on hand-made maps with known components."""

import torch

from fsnet.model.localization import attribute_maps, boxes_from_maps, boxes_to_pixels, connected_labels


def maps_of(*grids):
    return torch.stack([torch.tensor(g, dtype=torch.float32) for g in grids]).unsqueeze(0)  # (1, A, H, W)


def test_two_blobs_the_larger_one_wins_even_when_dimmer():
    m = torch.zeros(8, 8)
    m[1:3, 1:3] = 9.0  # 4 bright pixels
    m[4:7, 3:8] = 3.0  # 15 dim pixels (above 20% of 9)
    assert boxes_from_maps(m.view(1, 1, 8, 8), 0.2).tolist() == [[[3.0, 4.0, 8.0, 7.0]]]


def test_eight_connectivity_joins_diagonals():
    m = torch.zeros(6, 6)
    m[1, 1] = m[2, 2] = m[3, 3] = 1.0  # a diagonal line: one region of 3
    m[0, 5] = m[1, 5] = 1.0  # a vertical pair: a region of 2
    assert boxes_from_maps(m.view(1, 1, 6, 6), 0.2).tolist() == [[[1.0, 1.0, 4.0, 4.0]]]


def test_threshold_edge_is_strict():
    m = torch.zeros(5, 5)
    m[2, 2] = 5.0
    m[2, 3] = 1.0  # exactly 20% of the maximum: not above it
    m[2, 1] = 1.0001  # just above
    assert boxes_from_maps(m.view(1, 1, 5, 5), 0.2).tolist() == [[[1.0, 2.0, 3.0, 3.0]]]
    assert boxes_from_maps(m.view(1, 1, 5, 5), 0.19).tolist() == [[[1.0, 2.0, 4.0, 3.0]]]


def test_degenerate_maps_give_the_whole_map():
    zero = torch.zeros(4, 6)
    negative = -torch.ones(4, 6)
    nan = torch.ones(4, 6)
    nan[1, 1] = float("nan")
    inf = torch.zeros(4, 6)
    inf[0, 0] = float("inf")
    boxes = boxes_from_maps(torch.stack([zero, negative, nan, inf]).unsqueeze(0), 0.2)
    assert boxes.tolist() == [[[0.0, 0.0, 6.0, 4.0]] * 4]


def test_batched_over_images_and_attributes_independently():
    a = torch.zeros(6, 6)
    a[0:2, 0:2] = 1
    b = torch.zeros(6, 6)
    b[3:6, 4:6] = 2
    maps = torch.stack([torch.stack([a, b]), torch.stack([b, a])])  # (2, 2, 6, 6)
    assert boxes_from_maps(maps, 0.2).tolist() == [[[0, 0, 2, 2], [4, 3, 6, 6]], [[4, 3, 6, 6], [0, 0, 2, 2]]]


def test_connected_labels_against_a_flood_fill():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 9, 11, generator=g) > 0.55
    labels = connected_labels(mask)
    for n in range(3):
        seen = {}
        for i in range(9):
            for j in range(11):
                if not mask[n, i, j] or (i, j) in seen:
                    continue
                stack, region = [(i, j)], []
                seen[(i, j)] = True
                while stack:  # plain 8-connected flood fill
                    y, x = stack.pop()
                    region.append((y, x))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            yy, xx = y + dy, x + dx
                            if 0 <= yy < 9 and 0 <= xx < 11 and mask[n, yy, xx] and (yy, xx) not in seen:
                                seen[(yy, xx)] = True
                                stack.append((yy, xx))
                values = {int(labels[n, y, x]) for y, x in region}
                assert values == {1 + max(y * 11 + x for y, x in region)}
        assert (labels[n][~mask[n]] == 0).all()


def test_attribute_maps_are_the_chosen_class_activation():
    conv7 = torch.randn(2, 5, 4, 4)
    rows = torch.randn(2, 3, 5)
    maps = attribute_maps(conv7, rows)
    for b in range(2):
        for a in range(3):
            expected = sum(rows[b, a, k] * conv7[b, k] for k in range(5))
            torch.testing.assert_close(maps[b, a], expected)


def test_boxes_to_pixels():
    boxes = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    assert boxes_to_pixels(boxes, (4, 4), (64, 48)).tolist() == [[[12.0, 32.0, 36.0, 64.0]]]
