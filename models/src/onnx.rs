//! A minimal ONNX writer: the protobuf messages a converter needs to emit an inference graph
//! (nodes with int, ints and float attributes, raw-data initializers, typed inputs and
//! outputs), encoded by hand so the model tooling does not depend on an ONNX runtime.

/// Protobuf wire encoding into a growing buffer.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u64) {
        self.varint(((field as u64) << 3) | wire);
    }
    fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// ONNX `TensorProto.DataType` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Float = 1,
    Int64 = 7,
}

/// A node attribute.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// A dimension of a graph input or output: fixed or named (symbolic).
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// An ONNX graph under construction: nodes get unique output names, initializers are stored as
/// raw little-endian data.
#[derive(Default)]
pub struct Graph {
    nodes: Pb,
    initializers: Pb,
    inputs: Pb,
    outputs: Pb,
    count: usize,
    /// Bytes of initializer data (for the log).
    pub weight_bytes: usize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The encoded buffers run to hundreds of megabytes: show their sizes, not their bytes.
        f.debug_struct("Graph")
            .field("nodes", &self.count)
            .field("node_bytes", &self.nodes.0.len())
            .field("weight_bytes", &self.weight_bytes)
            .finish_non_exhaustive()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> Pb {
    let mut shape = Pb::default();
    for d in dims {
        let mut dim = Pb::default();
        match d {
            Dim::Fixed(v) => dim.int(1, *v),
            Dim::Named(n) => dim.str(2, n),
        }
        shape.bytes(1, &dim.0);
    }
    let mut tensor = Pb::default();
    tensor.int(1, elem as i64);
    tensor.bytes(2, &shape.0);
    let mut ty = Pb::default();
    ty.bytes(1, &tensor.0);
    let mut vi = Pb::default();
    vi.str(1, name);
    vi.bytes(2, &ty.0);
    vi
}

impl Graph {
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> String {
        let vi = value_info(name, elem, dims);
        self.inputs.bytes(11, &vi.0);
        name.to_string()
    }

    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        let vi = value_info(name, elem, dims);
        self.outputs.bytes(12, &vi.0);
    }

    fn initializer(&mut self, name: &str, elem: DataType, dims: &[usize], raw: &[u8]) -> String {
        let mut t = Pb::default();
        for d in dims {
            t.int(1, *d as i64);
        }
        t.int(2, elem as i64);
        t.str(8, name);
        t.bytes(9, raw);
        self.initializers.bytes(5, &t.0);
        self.weight_bytes += raw.len();
        name.to_string()
    }

    /// An f32 initializer of the given shape.
    pub fn f32s(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, DataType::Float, dims, &raw)
    }

    /// An f32 scalar initializer.
    pub fn scalar(&mut self, name: &str, v: f32) -> String {
        self.initializer(name, DataType::Float, &[], &v.to_le_bytes())
    }

    /// An i64 initializer of the given shape.
    pub fn i64s(&mut self, name: &str, dims: &[usize], values: &[i64]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, DataType::Int64, dims, &raw)
    }

    /// Adds a node and returns the name of its (single) output.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.count += 1;
        let out = format!("{}_{}", op_type.to_ascii_lowercase(), self.count);
        self.node(op_type, inputs, &out, attrs);
        out
    }

    /// Adds a node with a chosen output name.
    pub fn node(&mut self, op_type: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) {
        let mut n = Pb::default();
        for i in inputs {
            n.str(1, i);
        }
        n.str(2, output);
        n.str(3, output);
        n.str(4, op_type);
        for (name, a) in attrs {
            let mut p = Pb::default();
            p.str(1, name);
            match a {
                Attr::Float(f) => {
                    p.float(2, *f);
                    p.int(20, 1);
                }
                Attr::Int(i) => {
                    p.int(3, *i);
                    p.int(20, 2);
                }
                Attr::Ints(v) => {
                    for i in v {
                        p.int(8, *i);
                    }
                    p.int(20, 7);
                }
            }
            n.bytes(5, &p.0);
        }
        self.nodes.bytes(1, &n.0);
    }

    /// Writes the `ModelProto` (IR version 8, default-domain opset `opset`), streaming the
    /// graph's parts rather than copying the weights into one more buffer.
    pub fn write_model(
        self,
        name: &str,
        producer: &str,
        opset: i64,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let mut graph_name = Pb::default();
        graph_name.str(2, name);
        let parts = [
            &self.nodes.0,
            &graph_name.0,
            &self.initializers.0,
            &self.inputs.0,
            &self.outputs.0,
        ];
        let graph_len: usize = parts.iter().map(|p| p.len()).sum();
        let mut head = Pb::default();
        head.int(1, 8);
        head.str(2, producer);
        head.key(7, 2);
        head.varint(graph_len as u64);
        out.write_all(&head.0)?;
        for p in parts {
            out.write_all(p)?;
        }
        let mut opset_id = Pb::default();
        opset_id.str(1, "");
        opset_id.int(2, opset);
        let mut tail = Pb::default();
        tail.bytes(8, &opset_id.0);
        out.write_all(&tail.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_base_128() {
        let mut p = Pb::default();
        p.varint(1);
        p.varint(300);
        p.varint(u64::MAX);
        assert_eq!(&p.0[..3], &[1, 0xac, 0x02]);
        assert_eq!(p.0.len(), 3 + 10);
        // A negative int64 is its two's complement as a 10-byte varint (protobuf's rule).
        let mut n = Pb::default();
        n.int(1, -1);
        assert_eq!(n.0.len(), 1 + 10);
    }
}
