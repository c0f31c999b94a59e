"""Reading TensorBoard event files without TensorFlow, so that the plotting and benchmark
commands start in a second rather than after TensorFlow's ~4 s import. An event file is TFRecord
framing around tensorboard's Event protos: per record, the data's length (uint64, little
endian), the length's masked CRC-32C, the data, the data's masked CRC-32C."""
import collections
import functools
import glob
import os
import struct

from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

from trpo_tf.run.outputs import EVENTS_PREFIX

CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected


def crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = crc32c_table()


def masked_crc32c(data):
    """TFRecord's check of `data`: CRC-32C, rotated right by 15 bits, plus a constant."""
    crc, table = 0xFFFFFFFF, CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    """The records' data of one TFRecord file, in order; a record cut short by a kill (or any
    record whose check fails) ends the reading there, as TensorFlow's reader stops on it."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                return
            data, footer = f.read(length), f.read(4)
            if len(data) < length or len(footer) < 4 or (
                    masked_crc32c(data) != struct.unpack("<I", footer)[0]):
                return
            yield data


def read_events(path):
    """The Event records of one event file, in order (see read_records for a torn end)."""
    for data in read_records(path):
        yield event_pb2.Event.FromString(data)


def event_files(logdir):
    return sorted(glob.glob(os.path.join(logdir, EVENTS_PREFIX + "*")))


def values_by_tag(path):
    """{tag: [(step, Summary.Value)]} of one event file, in order; parsed once while the file
    stays as it is (a plot or benchmark reading several tags of a run reads it once)."""
    stat = os.stat(path)
    return _values_by_tag(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _values_by_tag(path, size, mtime_ns):
    values = collections.defaultdict(list)
    for event in read_events(path):
        for value in event.summary.value:
            values[value.tag].append((event.step, value))
    return values


def scalar(value):
    """A Summary.Value's number: a scalar tensor (tf.summary.scalar) or a simple_value."""
    return (float(tensor_util.make_ndarray(value.tensor)) if value.HasField("tensor")
            else value.simple_value)
