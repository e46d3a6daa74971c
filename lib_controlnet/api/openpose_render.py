"""POST /controlnet/render_openpose_json: draw OpenPose JSON (a list of pose files) as control maps."""

from __future__ import annotations

from fastapi import APIRouter, Body
from pydantic import BaseModel

from annotator.openpose_draw import draw_poses
from annotator.openpose_format import decode_pose_json
from lib_controlnet.errors import InputError

from .images import encode_png

MAX_CANVAS_SIDE = 8192
MAX_CANVAS_PIXELS = 32 * 2**20


class Person(BaseModel):
    pose_keypoints_2d: list[float]
    hand_right_keypoints_2d: list[float] | None = None
    hand_left_keypoints_2d: list[float] | None = None
    face_keypoints_2d: list[float] | None = None


class PoseData(BaseModel):
    people: list[Person]
    canvas_width: int
    canvas_height: int


def render(pose_data: list[PoseData]) -> dict:
    if not pose_data:
        return {"info": "No pose data detected."}
    images = []
    for index, pose in enumerate(pose_data):
        field = f"pose_data[{index}]"
        width, height = pose.canvas_width, pose.canvas_height
        if not (0 < width <= MAX_CANVAS_SIDE and 0 < height <= MAX_CANVAS_SIDE) or width * height > MAX_CANVAS_PIXELS:
            raise InputError(f"canvas {width}x{height} must be 1..{MAX_CANVAS_SIDE} per side and at most "
                             f"{MAX_CANVAS_PIXELS} pixels", field=field)
        people, height, width = decode_pose_json(pose.dict(), field=field)
        images.append(encode_png(draw_poses(people, height, width)))
    return {"images": images, "info": "Success"}


# The body is a JSON list of pose files; an empty body means an empty list.
_POSE_LIST = Body([], title="Pose json files to render.")


def add_render_openpose_route(router: APIRouter) -> None:
    @router.post("/controlnet/render_openpose_json")
    def render_openpose_json(pose_data: list[PoseData] = _POSE_LIST) -> dict:
        return render(pose_data)
