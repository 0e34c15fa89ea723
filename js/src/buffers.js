// Decoding the widgets' one array format {data, dtype, shape} into typed-array views.
// anywidget hands binary buffers over as DataViews that may start inside a larger
// ArrayBuffer, so every view is made from (buffer, byteOffset, length), never from .buffer alone.

const TYPES = { uint8: Uint8Array, float32: Float32Array };

export function decodeArray(value) {
  if (value == null) return null;
  const { data, dtype, shape } = value;
  const Type = TYPES[dtype];
  if (!Type) throw new Error(`unsupported dtype ${dtype}; expected uint8 or float32`);
  const size = shape.reduce((a, b) => a * b, 1);
  let buffer, byteOffset, byteLength;
  if (data instanceof ArrayBuffer) {
    buffer = data; byteOffset = 0; byteLength = data.byteLength;
  } else if (ArrayBuffer.isView(data)) {
    buffer = data.buffer; byteOffset = data.byteOffset; byteLength = data.byteLength;
  } else {
    throw new Error("array data must be an ArrayBuffer, a DataView or a typed array");
  }
  if (byteLength < size * Type.BYTES_PER_ELEMENT) {
    throw new Error(`array data holds ${byteLength} bytes, shape ${shape.join("x")} ${dtype} needs ${size * Type.BYTES_PER_ELEMENT}`);
  }
  let array;
  if (byteOffset % Type.BYTES_PER_ELEMENT === 0) {
    array = new Type(buffer, byteOffset, size);
  } else {
    // float32 views need 4-byte alignment: copy the bytes out once
    array = new Type(buffer.slice(byteOffset, byteOffset + size * Type.BYTES_PER_ELEMENT));
  }
  return { array, dtype, shape: [...shape] };
}
