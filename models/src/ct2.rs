//! Reader for CTranslate2 `model.bin` files (format version 5 and 6): the spec name, then named
//! variables (rank, dims, dtype, raw little-endian data), then aliases.

use std::collections::BTreeMap;

use crate::ModelError;

/// Element type of a variable, as CTranslate2 numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<DType> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One named variable; `data` borrows the file's bytes.
#[derive(Debug, Clone)]
pub struct Variable<'a> {
    pub dims: Vec<usize>,
    pub dtype: DType,
    pub data: &'a [u8],
}

impl Variable<'_> {
    /// The number of elements (`parse` checked that the product fits the variable's bytes).
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// The value of a scalar integer variable (`num_heads` and similar).
    pub fn scalar_int(&self) -> Option<i64> {
        if self.elements() != 1 {
            return None;
        }
        let d = self.data;
        Some(match self.dtype {
            DType::I8 => d[0] as i8 as i64,
            DType::I16 => i16::from_le_bytes([d[0], d[1]]) as i64,
            DType::I32 => i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64,
            _ => return None,
        })
    }
}

/// A parsed model: spec name, revision and variables by name (aliases resolved).
#[derive(Debug)]
pub struct Model<'a> {
    pub spec: String,
    pub revision: u32,
    pub variables: BTreeMap<String, Variable<'a>>,
    /// Alias name → target name.
    pub aliases: BTreeMap<String, String>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(ModelError::Format(format!(
                "CTranslate2 model truncated at byte {} reading {what} ({n} bytes wanted, {} left)",
                self.pos,
                self.bytes.len() - self.pos
            )));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ModelError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length-prefixed, NUL-terminated string.
    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.u16(what)? as usize;
        let raw = self.take(len, what)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec())
            .map_err(|_| ModelError::Format(format!("{what} is not UTF-8")))
    }
}

/// Parses a CTranslate2 `model.bin`. Checks every size against the file, so a truncated or
/// damaged file is an error, never a partial model.
pub fn parse(bytes: &[u8]) -> Result<Model<'_>, ModelError> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u32("format version")?;
    if !(5..=6).contains(&version) {
        return Err(ModelError::Format(format!(
            "unsupported CTranslate2 model format version {version} (supported: 5, 6)"
        )));
    }
    let spec = r.string("spec name")?;
    let revision = r.u32("spec revision")?;
    let count = r.u32("variable count")?;
    let mut variables = BTreeMap::new();
    for _ in 0..count {
        let name = r.string("variable name")?;
        let rank = r.u8("rank")? as usize;
        let mut dims = Vec::with_capacity(rank);
        for _ in 0..rank {
            dims.push(r.u32("dimension")? as usize);
        }
        let code = r.u8("dtype")?;
        let dtype = DType::from_code(code).ok_or_else(|| {
            ModelError::Format(format!("variable {name}: unknown dtype code {code}"))
        })?;
        let nbytes = r.u32("byte count")? as usize;
        // Checked: dimensions from a damaged file can overflow any product.
        let elements = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if elements.and_then(|e| e.checked_mul(dtype.size())) != Some(nbytes) {
            return Err(ModelError::Format(format!(
                "variable {name}: {nbytes} bytes for dims {dims:?} of {dtype:?}"
            )));
        }
        let data = r.take(nbytes, &name)?;
        variables.insert(name, Variable { dims, dtype, data });
    }
    let mut aliases = BTreeMap::new();
    if r.pos < bytes.len() {
        let n = r.u32("alias count")?;
        for _ in 0..n {
            let alias = r.string("alias")?;
            let target = r.string("alias target")?;
            aliases.insert(alias, target);
        }
    }
    if r.pos != bytes.len() {
        return Err(ModelError::Format(format!(
            "{} unexpected bytes after the CTranslate2 model's aliases",
            bytes.len() - r.pos
        )));
    }
    Ok(Model {
        spec,
        revision,
        variables,
        aliases,
    })
}

/// Serialises a model (tests build synthetic CTranslate2 files with it).
pub fn write(spec: &str, revision: u32, vars: &[(&str, Vec<usize>, u8, Vec<u8>)]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&6u32.to_le_bytes());
    string(&mut out, spec);
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
    for (name, dims, dtype, data) in vars {
        string(&mut out, name);
        out.push(dims.len() as u8);
        for d in dims {
            out.extend_from_slice(&(*d as u32).to_le_bytes());
        }
        out.push(*dtype);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`ct2_ggml`): dimensions whose product overflows made the size check
    /// panic instead of refusing the file.
    #[test]
    fn dimensions_that_overflow_are_a_format_error() {
        let mut b = Vec::new();
        b.extend(6u32.to_le_bytes());
        b.extend(2u16.to_le_bytes());
        b.extend(b"S\0");
        b.extend(1u32.to_le_bytes()); // revision
        b.extend(1u32.to_le_bytes()); // one variable
        b.extend(2u16.to_le_bytes());
        b.extend(b"v\0");
        b.push(3); // rank
        for _ in 0..3 {
            b.extend(u32::MAX.to_le_bytes());
        }
        b.push(0); // dtype
        b.extend(4u32.to_le_bytes());
        b.extend([0u8; 4]);
        let err = parse(&b).unwrap_err();
        assert!(err.to_string().contains("4 bytes for dims"), "{err}");
    }
}
