"""The filter picker: a spec typed in, checked, and previewed on the sample
face, with the catalogue (every filter, its parameters and its preview)."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import cv2
import numpy as np
import streamlit as st

from dvp.errors import DvpError
from dvp.filters import FILTERS, FilterSpec, parse_spec

if TYPE_CHECKING:
    from dvp.faces import Face


@st.cache_resource(show_spinner="finding the sample's face…")
def sample_with_faces() -> tuple[np.ndarray, list[Face]]:
    """The sample still and the faces found in it, once per dashboard process."""
    from dvp.faces import FaceDetector
    from dvp.sample import face_scene

    image = face_scene()
    detector = FaceDetector()
    try:
        return image, detector.detect(image, landmarks=True)
    finally:
        detector.close()


def preview(spec: FilterSpec, width: int = 160) -> np.ndarray:
    """The spec applied to the sample face, RGB, `width` pixels wide."""
    image, faces = sample_with_faces()
    out = spec.apply(image.copy(), faces)
    height = round(out.shape[0] * width / out.shape[1])
    return cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)[:, :, ::-1]


def filter_picker(key: str, default: str = "blur") -> str:
    """A filter spec input with its preview; returns the last valid spec typed
    (a bad one is said on the page and the one before it kept)."""
    asked = st.text_input("Filter", default, key=f"{key}_input",
                          help="one filter or several joined by |, e.g. pixelate:blocks=12|mesh")
    try:
        spec = parse_spec(asked)
        st.session_state[key] = str(spec)
    except DvpError as exc:
        st.error(str(exc))
    chosen = st.session_state.get(key, default)
    try:
        st.image(preview(parse_spec(chosen)), caption=f"preview: {chosen}")
    except DvpError as exc:  # no sample face here (scikit-image missing): the picker still works
        st.caption(f"no preview: {exc}")
    with st.expander("Filters"):
        columns = st.columns(5)
        for i, f in enumerate(FILTERS.values()):
            with columns[i % 5]:
                with contextlib.suppress(DvpError):
                    st.image(preview(parse_spec(f.name), 120))
                params = ", ".join(f"{k}={p.default:g} ({p.low:g}..{p.high:g})" for k, p in f.params.items())
                st.markdown(f"**{f.name}**: {f.summary}" + (f"  \n`{params}`" if params else ""))
    return chosen
