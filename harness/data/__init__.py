"""S3DIS data: the prepared layout's reader (prepare, verify and synth come with the data issue)."""
from harness.data.reader import CLASS_NAMES, Room, list_rooms, read_room

__all__ = ['CLASS_NAMES', 'Room', 'list_rooms', 'read_room']
