"""``jarrn bag IN --out OUT``: depth completion over ROS recordings (rosbag2 MCAP or sqlite3, ROS 1 ``.bag``), with
``rosbags`` (pure Python: no ROS install) and the project's runtime.

One concern a module: :mod:`.source` opens the input, :mod:`.topics` finds the camera, camera-info and LiDAR topics,
:mod:`.tf` looks transforms up as tf2 would (or reads ``--extrinsics``), :mod:`.pairing` pairs each image with the
nearest sweep in time, :mod:`.cloud` reads ``PointCloud2`` points, :mod:`.projection` projects them with the
``CameraInfo`` model, :mod:`.decode` decodes images, :mod:`.remote` sends frames to ``jarrn serve``, :mod:`.output`
writes OUT atomically, :mod:`.pipeline` runs the frames, :mod:`.preview` draws the
``--preview`` panels and :mod:`.cli` is the command line.
"""
