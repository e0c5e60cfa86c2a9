"""Hand-written English for the openvocab-v1 prompt set: shape paraphrases, size/position/background phrases,
extra words, undrawable things and combined prompts, each with the truth a careful reader would give.

Written from knowledge of English before any grounding result existed, and frozen with the set. Rules used:
- A word maps to a shape when its plain flat picture is that shape filled in one colour ("ball", "box", "plus
  sign"). A word naming a solid (sphere, cube, pyramid, cone), an outline (ring, donut), or another figure or
  object (oval, hexagon, heart, dragon) is undrawable: all its content words go to `undrawable`.
- A modifier that changes the form of a drawable shape ("hollow circle", "upside-down triangle",
  "six-pointed star") keeps the shape in `expect` and puts the modifier in `undrawable`.
- Words that only frame the request ("icon", "sprite:", "please draw", "simple", "flat") state nothing.
- Everyday objects whose picture is the filled shape count as the shape (ball, orb, dot, box, tile, wedge); the
  named solids do not (sphere, cube, pyramid, cone).
- Ambiguous words are left out entirely: rectangle (a square is one), polygon, "in a corner" (which one?).
Truth maps are (value or None, undrawable words). Canonical palette words (vocab.py) only fill the other slots.
"""

from __future__ import annotations

Truth = tuple[str | None, tuple[str, ...]]

# ---- shapes ------------------------------------------------------------------------------------------

SHAPE_PARAPHRASES: dict[str, Truth] = {
    # circle
    "ball": ("circle", ()), "dot": ("circle", ()), "disc": ("circle", ()), "disk": ("circle", ()),
    "orb": ("circle", ()), "round dot": ("circle", ()), "filled circle": ("circle", ()),
    "solid circle": ("circle", ()), "circular shape": ("circle", ()), "round shape": ("circle", ()),
    "polka dot": ("circle", ()), "spot": ("circle", ()), "circle shape": ("circle", ()),
    # square
    "box": ("square", ()), "block": ("square", ()), "tile": ("square", ()), "filled square": ("square", ()),
    "solid square": ("square", ()), "square shape": ("square", ()), "square block": ("square", ()),
    "square tile": ("square", ()),
    # triangle
    "wedge": ("triangle", ()), "triangle shape": ("triangle", ()), "triangular shape": ("triangle", ()),
    "filled triangle": ("triangle", ()), "solid triangle": ("triangle", ()), "upright triangle": ("triangle", ()),
    "triangle pointing up": ("triangle", ()), "isosceles triangle": ("triangle", ()),
    "upward-pointing triangle": ("triangle", ()),
    # star
    "five-pointed star": ("star", ()), "5-pointed star": ("star", ()), "pentagram": ("star", ()),
    "star shape": ("star", ()), "filled star": ("star", ()), "solid star": ("star", ()),
    "five point star": ("star", ()), "5 point star": ("star", ()),
    # cross (the domain's cross is a plus sign, arms a third of the extent wide)
    "plus": ("cross", ()), "plus sign": ("cross", ()), "plus symbol": ("cross", ()), "greek cross": ("cross", ()),
    "plus-shaped cross": ("cross", ()), "cross shape": ("cross", ()), "plus shape": ("cross", ()),
    "addition sign": ("cross", ()), "+": ("cross", ()), "+ sign": ("cross", ()),
    # form modifiers on a drawable shape: the shape stands, the modifier cannot be drawn
    "hollow circle": ("circle", ("hollow",)), "half circle": ("circle", ("half",)),
    "outlined square": ("square", ("outlined",)), "rounded square": ("square", ("rounded",)),
    "upside-down triangle": ("triangle", ("upside-down",)), "inverted triangle": ("triangle", ("inverted",)),
    "right triangle": ("triangle", ("right",)), "six-pointed star": ("star", ("six-pointed",)),
    "diagonal cross": ("cross", ("diagonal",)),
    # other figures: nothing of the shape stands
    "ring": (None, ("ring",)), "donut": (None, ("donut",)), "oval": (None, ("oval",)),
    "ellipse": (None, ("ellipse",)), "diamond": (None, ("diamond",)), "rhombus": (None, ("rhombus",)),
    "hexagon": (None, ("hexagon",)), "pentagon": (None, ("pentagon",)), "octagon": (None, ("octagon",)),
    "semicircle": (None, ("semicircle",)), "crescent": (None, ("crescent",)), "sphere": (None, ("sphere",)),
    "cube": (None, ("cube",)), "pyramid": (None, ("pyramid",)), "cone": (None, ("cone",)),
    "asterisk": (None, ("asterisk",)), "saltire": (None, ("saltire",)), "x shape": (None, ("x",)),
    "latin cross": (None, ("latin", "cross")), "star of david": (None, ("star", "david")),
}

# ---- size, position, background ---------------------------------------------------------------------

SIZE_PHRASES: dict[str, Truth] = {
    "small": ("small", ()), "little": ("small", ()), "tiny": ("small", ()), "mini": ("small", ()),
    "miniature": ("small", ()), "wee": ("small", ()), "teeny": ("small", ()), "small-sized": ("small", ()),
    "smallish": ("small", ()), "itty-bitty": ("small", ()), "teeny tiny": ("small", ()),
    "large": ("large", ()), "big": ("large", ()), "huge": ("large", ()), "giant": ("large", ()),
    "massive": ("large", ()), "enormous": ("large", ()), "gigantic": ("large", ()), "large-sized": ("large", ()),
    "jumbo": ("large", ()), "very big": ("large", ()), "really large": ("large", ()),
    "medium": (None, ("medium",)), "medium-sized": (None, ("medium-sized",)), "mid-sized": (None, ("mid-sized",)),
    "average-sized": (None, ("average-sized",)),
}

POSITION_PHRASES: dict[str, Truth] = {
    "in the center": ("center", ()), "in the centre": ("center", ()), "in the middle": ("center", ()),
    "centered": ("center", ()), "centred": ("center", ()), "at the center": ("center", ()),
    "in the middle of the image": ("center", ()), "dead center": ("center", ()),
    "in the center of the frame": ("center", ()),
    "in the top left": ("top left", ()), "in the top left corner": ("top left", ()), "top-left": ("top left", ()),
    "in the upper left": ("top left", ()), "upper-left corner": ("top left", ()), "at the top left": ("top left", ()),
    "in the upper-left corner of the image": ("top left", ()), "in the northwest corner": ("top left", ()),
    "in the top right": ("top right", ()), "top right corner": ("top right", ()), "top-right": ("top right", ()),
    "in the upper right": ("top right", ()), "upper-right corner": ("top right", ()),
    "at the top right": ("top right", ()), "in the northeast corner": ("top right", ()),
    "in the bottom left": ("bottom left", ()), "bottom left corner": ("bottom left", ()),
    "bottom-left": ("bottom left", ()), "in the lower left": ("bottom left", ()),
    "lower-left corner": ("bottom left", ()), "at the bottom left": ("bottom left", ()),
    "in the southwest corner": ("bottom left", ()),
    "in the bottom right": ("bottom right", ()), "in the bottom right corner": ("bottom right", ()),
    "bottom-right": ("bottom right", ()), "in the lower right": ("bottom right", ()),
    "lower-right corner": ("bottom right", ()), "at the bottom right": ("bottom right", ()),
    "in the lower-right corner of the image": ("bottom right", ()), "in the southeast corner": ("bottom right", ()),
    "at the top": (None, ("top",)), "on the left": (None, ("left",)), "at the bottom": (None, ("bottom",)),
    "on the right side": (None, ("right", "side")), "top center": (None, ("top", "center")),
    "in the bottom middle": (None, ("bottom", "middle")), "off to the left": (None, ("left",)),
    "in the upper half": (None, ("upper", "half")), "near the edge": (None, ("edge",)),
}

BACKGROUND_PHRASES: dict[str, Truth] = {
    "on a black background": ("black", ()), "on black": ("black", ()), "against a black backdrop": ("black", ()),
    "with a black background": ("black", ()), "black background": ("black", ()),
    "on a gray background": ("gray", ()), "on a grey background": ("gray", ()), "on grey": ("gray", ()),
    "against a grey backdrop": ("gray", ()), "on a mid-gray background": ("gray", ()), "gray bg": ("gray", ()),
    "on a navy background": ("navy", ()), "on navy": ("navy", ()), "on a navy blue background": ("navy", ()),
    "on a dark blue background": ("navy", ()), "against a navy backdrop": ("navy", ()), "navy bg": ("navy", ()),
    "on a dark green background": ("dark green", ()), "on dark green": ("dark green", ()),
    "on a forest green background": ("dark green", ()), "against a dark-green backdrop": ("dark green", ()),
    "on a deep green background": ("dark green", ()), "dark green bg": ("dark green", ()),
    "on a white background": (None, ("white",)), "on a red background": (None, ("red",)),
    "on a transparent background": (None, ("transparent",)), "on a checkered background": (None, ("checkered",)),
    "on a gradient background": (None, ("gradient",)), "on a pink background": (None, ("pink",)),
    "on a yellow background": (None, ("yellow",)), "on a starry background": (None, ("starry",)),
    "on a wooden background": (None, ("wooden",)), "in outer space": (None, ("outer", "space")),
}

# ---- extra words -------------------------------------------------------------------------------------

# {p} is a plain prompt ("red star"), {a} its article; none of these words states anything
EXTRA_WORDS: tuple[str, ...] = (
    "{p} icon", "{a} {p} icon", "sprite: {p}", "please draw {a} {p}", "please draw {a} {p}, thanks",
    "a picture of {a} {p}", "an image of {a} {p}", "draw {a} {p}", "draw me {a} {p}", "can you draw {a} {p}?",
    "i want {a} {p}", "give me {a} {p}", "generate {a} {p}", "make {a} {p}", "show {a} {p}", "{a} simple {p}",
    "flat {p} icon", "{p} clipart", "{p} sprite", "game asset: {p}", "prompt: {p}", "just {a} {p}",
    "{a} single {p}", "{p} please", "{p}!!", "{p}...", "{a} {p} symbol", "{a} {p} graphic", "2d {p}",
    "{p} for my game", "hey, draw {a} {p} for me", "{p}, nothing else", "create {a} {p}", "{p} (simple)",
    "simple flat vector {p}", "one {p}", "{a} {p}, please", "need {a} {p} asap",
)

# ---- word order --------------------------------------------------------------------------------------

# fields: {shape} {color} {size} {pos} (a canonical position, "top left") {bg}; {a} article of the next word
WORD_ORDER: tuple[str, ...] = (
    "{shape}, {color}", "{shape} {color}", "{shape} {color} {size}", "{color}: {shape}", "{shape} ({color})",
    "{shape} - {color}", "{shape}, {color}, {size}", "{shape} in {color}, {size}", "{pos}: {color} {shape}",
    "in the {pos}, {a_color} {color} {shape}", "on a {bg} background, {a_color} {color} {shape}",
    "{bg} background, {color} {shape}", "{bg} background with {a_size} {size} {color} {shape}",
    "{shape}: {color}, {size}, {pos}", "{size} {shape}, {color}", "{shape}, {pos}, {color}",
    "{shape} colour {color}", "{shape} color: {color}", "{color}, {size}, {shape}", "{shape} {size} {color}",
    "{size}, {color}: {shape}", "{pos} corner, {size} {shape}, {color}", "{shape} {color} {pos}",
    "{shape} of {color} colour, {size}", "{bg} backdrop; {shape}; {color}",
)

# ---- undrawable things -------------------------------------------------------------------------------

# thing -> its undrawable words; prompts add a palette colour, size or position around it
UNDRAWABLE_THINGS: dict[str, tuple[str, ...]] = {
    "dragon": ("dragon",), "heart": ("heart",), "treasure chest": ("treasure", "chest"), "car": ("car",),
    "tree": ("tree",), "moon": ("moon",), "crescent moon": ("crescent", "moon"), "sword": ("sword",),
    "house": ("house",), "cat": ("cat",), "dog": ("dog",), "fish": ("fish",), "flower": ("flower",),
    "cloud": ("cloud",), "sun": ("sun",), "apple": ("apple",), "leaf": ("leaf",),
    "lightning bolt": ("lightning", "bolt"), "arrow": ("arrow",), "smiley face": ("smiley", "face"),
    "key": ("key",), "crown": ("crown",), "shield": ("shield",), "skull": ("skull",), "ghost": ("ghost",),
    "rocket": ("rocket",), "robot": ("robot",), "castle": ("castle",), "mountain": ("mountain",),
    "checkmark": ("checkmark",), "bird": ("bird",), "butterfly": ("butterfly",), "umbrella": ("umbrella",),
    "snowflake": ("snowflake",), "balloon": ("balloon",), "gem": ("gem",), "stick figure": ("stick", "figure"),
    "airplane": ("airplane",), "boat": ("boat",), "bicycle": ("bicycle",), "cookie": ("cookie",),
    "letter a": ("letter", "a"), "number 7": ("number", "7"), "spiral": ("spiral",), "teardrop": ("teardrop",),
}

# whole prompts: (prompt, expect, undrawable); palette words only, so only the undrawable part is tested
UNDRAWABLE_PROMPTS: tuple[tuple[str, dict[str, str], tuple[str, ...]], ...] = (
    ("three blue circles", {"color": "blue", "shape": "circle"}, ("three",)),
    ("two red stars", {"color": "red", "shape": "star"}, ("two",)),
    ("a pair of green squares", {"color": "green", "shape": "square"}, ("pair",)),
    ("a row of yellow triangles", {"color": "yellow", "shape": "triangle"}, ("row",)),
    ("many small crosses", {"size": "small", "shape": "cross"}, ("many",)),
    ("a striped red square", {"color": "red", "shape": "square"}, ("striped",)),
    ("a glowing star", {"shape": "star"}, ("glowing",)),
    ("a shiny blue circle", {"color": "blue", "shape": "circle"}, ("shiny",)),
    ("a blurry triangle", {"shape": "triangle"}, ("blurry",)),
    ("a spinning orange star", {"color": "orange", "shape": "star"}, ("spinning",)),
    ("a tilted square", {"shape": "square"}, ("tilted",)),
    ("a dotted purple circle", {"color": "purple", "shape": "circle"}, ("dotted",)),
    ("a transparent cyan square", {"color": "cyan", "shape": "square"}, ("transparent",)),
    ("a red star with a black outline", {"color": "red", "shape": "star"}, ("black", "outline")),
    ("a white circle with a shadow", {"color": "white", "shape": "circle"}, ("shadow",)),
    ("a yellow star with a face", {"color": "yellow", "shape": "star"}, ("face",)),
    ("a 3d green cube", {"color": "green"}, ("3d", "cube")),
)

# ---- combined ----------------------------------------------------------------------------------------

# several phenomena at once, written by hand; colour words that are XKCD names are checked against the
# colour rule by the builder
COMBINED_PROMPTS: tuple[tuple[str, dict[str, str], tuple[str, ...]], ...] = (
    ("golden treasure chest", {"color": "yellow"}, ("treasure", "chest")),
    ("Please draw a SAPPHIRE ball in the upper-right corner on a grey backdrop",
     {"color": "blue", "shape": "circle", "position": "top right", "background": "gray"}, ()),
    ("sprite: tiny cherry-red plus sign, bottom left",
     {"color": "red", "shape": "cross", "size": "small", "position": "bottom left"}, ()),
    ("a lemon-colored box on navy", {"color": "yellow", "shape": "square", "background": "navy"}, ()),
    ("BIG emerald triangle, top-left corner, on black",
     {"color": "green", "shape": "triangle", "size": "large", "position": "top left", "background": "black"}, ()),
    ("a red dragon in the top left", {"color": "red", "position": "top left"}, ("dragon",)),
    ("hot pink heart icon", {}, ("hot", "pink", "heart")),
    ("Tiny Turquoise Dot, Dead Center", {"color": "cyan", "shape": "circle", "size": "small", "position": "center"},
     ()),
    ("draw a huge scarlet pentagram on a dark-green backdrop pls",
     {"color": "red", "shape": "star", "size": "large", "background": "dark green"}, ()),
    ("crimson plus, lower right, small", {"color": "red", "shape": "cross", "size": "small",
                                          "position": "bottom right"}, ()),
    ("a chocolate-colored heart on a white background", {}, ("chocolate-colored", "heart", "white")),
    ("icon: tangerine wedge, upper left", {"color": "orange", "shape": "triangle", "position": "top left"}, ()),
    ("a Violet orb in the middle of the image, on black",
     {"color": "purple", "shape": "circle", "position": "center", "background": "black"}, ()),
    ("big off-white block; bottom-right; navy bg",
     {"color": "white", "shape": "square", "size": "large", "position": "bottom right", "background": "navy"}, ()),
    ("a small gold star with a black outline", {"color": "yellow", "shape": "star", "size": "small"},
     ("black", "outline")),
    ("Mustard-colored disc on a dark blue background",
     {"color": "yellow", "shape": "circle", "background": "navy"}, ()),
    ("three tomato red circles", {"color": "red", "shape": "circle"}, ("three",)),
    ("a teal ring in the bottom left", {"color": "cyan", "position": "bottom left"}, ("ring",)),
    ("give me a massive pumpkin orange plus sign on grey",
     {"color": "orange", "shape": "cross", "size": "large", "background": "gray"}, ()),
    ("an upside-down emerald triangle", {"color": "green", "shape": "triangle"}, ("upside-down",)),
)
