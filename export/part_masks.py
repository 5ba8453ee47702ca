"""Face part masks from landmarks (paper Fig. 7): hair, forehead, cheek, eyes, nose, mouth, jaw.

Torch-free (numpy only), shared by the zoo's metrics and the runtime (export.face_parts reads
the landmark files). Input: 68-point iBUG landmarks (x, y) in pixel coordinates (pixel centres
at integers), or LaPa's 106 points (mapped to the 68-point equivalent). Output: (7, H, W) bool
masks in PART_NAMES order, disjoint, clipped to the image.

Geometry (all lengths relative to the face, so the rules hold at any image size; written out with
a figure in docs/data.md). iod = distance between the eye centres, ex = unit vector from the left
to the right eye centre, up = ex rotated to point to the top of the head, d = distance from the
brow centre to the chin (point 8) along -up, m = 0.1 iod:

  eyes     = per side, convex hull of eyebrow + eye points (17-21 + 36-41, 22-26 + 42-47),
             dilated by m (the periocular region: the 7 parts have no "eyebrow")
  nose     = convex hull of 27-35 dilated by m
  mouth    = convex hull of 48-59 dilated by m
  jaw      = inside the contour 3..13 (closed by the chord 13-3): everything below the line
             through the mouth corners (48, 54) and a band of 0.25 iod along the contour
  cheek    = face polygon (contour 0..16 closed along the brows) below the lower-eyelid line
  forehead = band from the contour points 0/16 and the brows up to 0.4 d above the brow centre
  hair     = upper half-ellipse centred between points 0 and 16, semi-axes 0.6 |p16 - p0| (along
             ex) and (0.4 + 0.25) d + brow height (along up), outside the face
Masks are made disjoint by priority eyes > nose > mouth > jaw > cheek > forehead > hair.

A pixel belongs to a region when its centre does: inside a polygon (even-odd rule) or on its
boundary; a polygon "dilated by r" is every centre inside it or within r of its boundary (exact
point-to-segment distances, no raster approximation), and the jaw band every centre within
0.25 iod of the polyline 3..13.
"""
import numpy as np

PART_NAMES = ("hair", "forehead", "cheek", "eyes", "nose", "mouth", "jaw")
# Colours for overlays (RGB 0..255), one per part in PART_NAMES order.
PART_COLORS = ((140, 86, 75), (255, 187, 120), (44, 160, 44), (31, 119, 180), (214, 39, 40),
               (227, 119, 194), (148, 103, 189))

_PRIORITY = ("eyes", "nose", "mouth", "jaw", "cheek", "forehead", "hair")
FOREHEAD_HEIGHT = 0.4   # x d above the brow centre (forehead ~ 1/3 of hairline-to-chin)
HAIR_HEIGHT = 0.25      # x d above the hairline (visible hair on top of the head)
HAIR_WIDTH = 1.2        # x |p16 - p0| : full width of the hair ellipse
MARGIN = 0.1            # x iod : dilation of eyes, nose and mouth
JAW_BAND = 0.25         # x iod : width of the jaw band along the lower contour 3..13
# Pixel centres this close to a region's boundary count as on it: landmarks at integer pixel
# coordinates (ORL's) put centres exactly on hull edges, where the computed distance is ~1e-15.
ON_BOUNDARY = 1e-9

# The JD/LaPa 106-point scheme -> iBUG 68 equivalents: contour 0..32 every other point, upper
# eyebrow 33..42, nose bridge 43..46, nose base 47..51, eyes 52..57 / 58..63, outer lip 84..95,
# inner lip 96..103. The masks use eye points only as sets (hulls), so the order within an eye
# does not matter.
LAPA106_TO_68 = np.array(
    list(range(0, 33, 2)) + list(range(33, 43)) + list(range(43, 47)) + list(range(47, 52))
    + list(range(52, 58)) + list(range(58, 64)) + list(range(84, 96)) + list(range(96, 104)))
assert len(LAPA106_TO_68) == 68


def lapa106_to_68(pts106) -> np.ndarray:
    """The 68-point equivalent of LaPa's 106 landmarks (see LAPA106_TO_68)."""
    pts106 = np.asarray(pts106, dtype=np.float32)
    if pts106.shape != (106, 2):
        raise ValueError(f"expected (106, 2) landmarks, got {pts106.shape}")
    return pts106[LAPA106_TO_68]


# ---------------------------------------------------------------------------------- geometry

def convex_hull(pts) -> np.ndarray:
    """Convex hull (Andrew's monotone chain), counter-clockwise, of an (n, 2) array."""
    p = sorted(set(map(tuple, np.asarray(pts, dtype=np.float64).tolist())))
    if len(p) <= 2:
        return np.asarray(p, dtype=np.float64).reshape(-1, 2)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for q in p:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    for q in reversed(p):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def distance_to_polyline(x, y, vertices, closed) -> np.ndarray:
    """Euclidean distance from the points (x, y) (arrays of one shape) to the polyline through
    ``vertices`` ((n, 2); the segment back to the first vertex too when ``closed``)."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    if len(v) == 1:
        starts, ends = v, v
    else:
        starts, ends = (v, np.roll(v, -1, 0)) if closed and len(v) > 2 else (v[:-1], v[1:])
    best2 = np.full(np.shape(x), np.inf)
    for (ax, ay), (bx, by) in zip(starts, ends):
        dx, dy = bx - ax, by - ay
        px, py = x - ax, y - ay
        length2 = dx * dx + dy * dy
        if length2 > 0:  # the closest point of the segment: its parameter clamped to the ends
            t = np.clip((px * dx + py * dy) / length2, 0.0, 1.0)
            px -= t * dx
            py -= t * dy
        np.minimum(best2, px * px + py * py, out=best2)
    return np.sqrt(best2)


def inside_polygon(x, y, vertices) -> np.ndarray:
    """Whether each point (x, y) lies inside the closed polygon ``vertices`` (even-odd rule;
    points exactly on an edge may fall either way: add the boundary with distance_to_polyline)."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(np.shape(x), dtype=bool)
    for (ax, ay), (bx, by) in zip(v, np.roll(v, -1, 0)):
        if ay == by:  # a horizontal edge never crosses the ray to the right of a point
            continue
        straddles = (ay > y) != (by > y)
        x_cross = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= straddles & (x < x_cross)
    return inside


def _pixel_region(vertices, height, width, radius, closed) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    out = np.zeros((height, width), dtype=bool)
    reach = radius + ON_BOUNDARY
    # only the bounding box grown by the radius can hold a pixel of the region
    x0, y0 = np.maximum(np.ceil(v.min(0) - reach), 0).astype(int)
    x1, y1 = np.minimum(np.floor(v.max(0) + reach), [width - 1, height - 1]).astype(int)
    if x0 > x1 or y0 > y1:
        return out
    y, x = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
    region = distance_to_polyline(x, y, v, closed) <= reach
    if closed and len(v) > 2:
        region |= inside_polygon(x, y, v)
    out[y0:y1 + 1, x0:x1 + 1] = region
    return out


def polygon_region(vertices, height, width, radius=0.0) -> np.ndarray:
    """(height, width) bool: pixel centres inside the polygon or within ``radius`` of its
    boundary (radius 0: the polygon with its boundary)."""
    return _pixel_region(vertices, height, width, radius, closed=True)


def polyline_band(vertices, height, width, radius) -> np.ndarray:
    """(height, width) bool: pixel centres within ``radius`` of the open polyline."""
    return _pixel_region(vertices, height, width, radius, closed=False)


def part_masks_from_landmarks(landmarks, height, width) -> np.ndarray:
    """(7, height, width) bool masks in PART_NAMES order from 68 (or LaPa 106) landmarks.

    ``landmarks`` are (x, y) pixel coordinates in the image of that size. The rules are in the
    module docstring and docs/data.md.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape == (106, 2):
        pts = lapa106_to_68(pts).astype(np.float64)
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise ValueError(f"expected (68, 2) finite landmarks (or LaPa (106, 2)), got {pts.shape}")
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise ValueError(f"mask size must be positive, got {h}x{w}")
    left_eye, right_eye = pts[36:42].mean(0), pts[42:48].mean(0)
    iod = float(np.linalg.norm(right_eye - left_eye))
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: the two eye centres coincide")
    ex = (right_eye - left_eye) / iod
    up = np.array([ex[1], -ex[0]])
    brows = pts[17:27]
    brow_c = brows.mean(0)
    d = float(np.dot(brow_c - pts[8], up))  # brow centre height above the chin
    if d <= 0:
        raise ValueError("implausible landmarks: the chin (point 8) is not below the eyebrows")
    m = MARGIN * iod
    parts = {}
    parts["eyes"] = (polygon_region(convex_hull(np.r_[pts[17:22], pts[36:42]]), h, w, m)
                     | polygon_region(convex_hull(np.r_[pts[22:27], pts[42:48]]), h, w, m))
    parts["nose"] = polygon_region(convex_hull(pts[27:36]), h, w, m)
    parts["mouth"] = polygon_region(convex_hull(pts[48:60]), h, w, m)
    yy, xx = np.mgrid[0:h, 0:w]
    grid = np.stack([xx, yy], -1).astype(np.float64)

    def height_above(point):  # signed distance along ``up`` of every pixel above ``point``
        return (grid - point) @ up

    face = polygon_region(np.r_[pts[0:17], brows[::-1]], h, w)
    # Jaw: the chin below the mouth corners and a band along the lower contour.
    near_contour = polyline_band(pts[3:14], h, w, JAW_BAND * iod)
    below_mouth = height_above((pts[48] + pts[54]) / 2) <= 0
    parts["jaw"] = face & polygon_region(pts[3:14], h, w) & (below_mouth | near_contour)
    lower_lids = np.r_[pts[40:42], pts[46:48]].mean(0)
    parts["cheek"] = face & (height_above(lower_lids) <= 0)
    # Forehead: from the contour tops (0, 16) and the brows up to FOREHEAD_HEIGHT * d.
    top = FOREHEAD_HEIGHT * d
    order = np.argsort(brows @ ex)
    lift = lambda p: p + up * (top + float(np.dot(brow_c - p, up)))  # noqa: E731
    forehead_poly = np.r_[pts[[0]], brows[order], pts[[16]], [lift(pts[16])], [lift(pts[0])]]
    parts["forehead"] = polygon_region(forehead_poly, h, w)
    # Hair: the top of the head above the line p0-p16, outside face and forehead.
    c = (pts[0] + pts[16]) / 2
    a = HAIR_WIDTH * np.linalg.norm(pts[16] - pts[0]) / 2
    b = float(np.dot(brow_c - c, up)) + (FOREHEAD_HEIGHT + HAIR_HEIGHT) * d
    u, v = (grid - c) @ ex, (grid - c) @ up
    parts["hair"] = (v >= 0) & ((u / a) ** 2 + (v / max(b, 1e-6)) ** 2 <= 1) & ~face

    taken = np.zeros((h, w), dtype=bool)
    for name in _PRIORITY:
        parts[name] = parts[name] & ~taken
        taken |= parts[name]
    return np.stack([parts[n] for n in PART_NAMES])


def overlay_part_masks(image, masks, alpha=0.45) -> np.ndarray:
    """RGB uint8 array: ``image`` (PIL or HxW[x3] array) with the 7 masks tinted in PART_COLORS."""
    img = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    img = np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img[..., :3]
    out = img.astype(np.float64)
    for mask, color in zip(masks, PART_COLORS):
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, dtype=np.float64)
    return out.round().clip(0, 255).astype(np.uint8)
