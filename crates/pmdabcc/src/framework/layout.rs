//! Layouts from the object's BTF: each map's key and value types, the records of ring
//! buffers, and the read-only globals, with field offsets, sizes and kinds. Specs name
//! fields; this says where they are (never hand-written offsets).

use libbpf_rs::btf::{types, BtfKind, BtfType, HasSize, ReferencesType};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Int {
        signed: bool,
    },
    /// A `char` array: text.
    Text,
    /// An array of integers (histogram buckets).
    Array {
        elem: usize,
        len: usize,
    },
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
    pub kind: FieldKind,
}

/// A struct, or a plain type as one field named "".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub name: String,
    pub size: usize,
    pub fields: Vec<Field>,
}

impl Layout {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// A plain (non-struct) type: its only field.
    pub fn plain(&self) -> Option<&Field> {
        match self.fields.as_slice() {
            [f] if f.name.is_empty() => Some(f),
            _ => None,
        }
    }

    pub fn field_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Clone, Debug, Default)]
pub struct MapLayout {
    /// BPF_MAP_TYPE_* (from `__uint(type, …)`), 0 when not declared.
    pub map_type: u32,
    pub key: Option<Layout>,
    pub value: Option<Layout>,
}

#[derive(Clone, Debug, Default)]
pub struct ObjectLayout {
    pub maps: BTreeMap<String, MapLayout>,
    /// `.rodata` variables: offset and size.
    pub rodata: BTreeMap<String, (usize, usize)>,
    pub structs: BTreeMap<String, Layout>,
}

impl ObjectLayout {
    /// Reads the layouts from an object file's BTF: every map's key and value, the
    /// read-only globals, and the structs named in `records` (ring buffer records).
    pub fn read(object: &[u8], records: &[&str]) -> Result<ObjectLayout, String> {
        let btf = libbpf_rs::btf::Btf::from_raw("object", object)
            .map_err(|e| format!("cannot read the object's BTF: {e}"))?
            .ok_or("the object has no BTF (compile with clang -g)")?;
        let mut out = ObjectLayout::default();
        if let Some(sec) = btf.type_by_name::<types::DataSec>(".maps") {
            for vs in sec.iter() {
                let Some(var) = btf.type_by_id::<types::Var>(vs.ty) else {
                    continue;
                };
                let Some(name) = var.name() else { continue };
                let def = var.referenced_type().skip_mods_and_typedefs();
                let Ok(def) = types::Struct::try_from(def) else {
                    continue;
                };
                let mut ml = MapLayout::default();
                for m in def.iter() {
                    let which = m.name.map(|n| n.to_string_lossy().into_owned());
                    let Some(t) = btf.type_by_id::<BtfType>(m.ty) else {
                        continue;
                    };
                    // `__type(key, T)` is a `T *key` member; `__uint(type, N)` an `int (*type)[N]`.
                    let Ok(p) = types::Ptr::try_from(t) else {
                        continue;
                    };
                    if which.as_deref() == Some("type") {
                        if let Ok(a) = types::Array::try_from(p.referenced_type()) {
                            ml.map_type = a.capacity() as u32;
                        }
                        continue;
                    }
                    let l = layout_of(&btf, p.referenced_type());
                    match which.as_deref() {
                        Some("key") => ml.key = Some(l),
                        Some("value") => ml.value = Some(l),
                        _ => {}
                    }
                }
                out.maps.insert(name.to_string_lossy().into_owned(), ml);
            }
        }
        if let Some(sec) = btf.type_by_name::<types::DataSec>(".rodata") {
            for vs in sec.iter() {
                if let Some(name) = btf.type_by_id::<types::Var>(vs.ty).and_then(|v| v.name()) {
                    out.rodata.insert(
                        name.to_string_lossy().into_owned(),
                        (vs.offset as usize, vs.size),
                    );
                }
            }
        }
        for name in records {
            if let Some(s) = btf.type_by_name::<types::Struct>(name) {
                out.structs.insert(name.to_string(), layout_of(&btf, *s));
            }
        }
        Ok(out)
    }
}

fn size_of(t: BtfType) -> usize {
    let t = t.skip_mods_and_typedefs();
    match t.kind() {
        BtfKind::Int => types::Int::try_from(t).map_or(0, |i| i.size()),
        BtfKind::Enum => types::Enum::try_from(t).map_or(0, |e| e.size()),
        BtfKind::Enum64 => types::Enum64::try_from(t).map_or(0, |e| e.size()),
        BtfKind::Struct => types::Struct::try_from(t).map_or(0, |s| s.size()),
        BtfKind::Union => types::Union::try_from(t).map_or(0, |s| s.size()),
        BtfKind::Ptr => 8,
        BtfKind::Array => {
            types::Array::try_from(t).map_or(0, |a| a.capacity() * size_of(a.contained_type()))
        }
        _ => 0,
    }
}

fn kind_of(t: BtfType) -> FieldKind {
    let t = t.skip_mods_and_typedefs();
    match t.kind() {
        BtfKind::Int => match types::Int::try_from(t) {
            Ok(i) => FieldKind::Int {
                signed: matches!(i.encoding, types::IntEncoding::Signed),
            },
            Err(_) => FieldKind::Other,
        },
        BtfKind::Enum | BtfKind::Enum64 => FieldKind::Int { signed: false },
        BtfKind::Array => match types::Array::try_from(t) {
            Ok(a) => {
                let inner = a.contained_type().skip_mods_and_typedefs();
                let is_char = types::Int::try_from(inner).is_ok_and(|i| {
                    i.bits == 8
                        && (matches!(i.encoding, types::IntEncoding::Char)
                            || inner.name().is_some_and(|n| n == "char"))
                });
                if is_char {
                    FieldKind::Text
                } else if matches!(kind_of(inner), FieldKind::Int { .. }) {
                    FieldKind::Array {
                        elem: size_of(inner),
                        len: a.capacity(),
                    }
                } else {
                    FieldKind::Other
                }
            }
            Err(_) => FieldKind::Other,
        },
        _ => FieldKind::Other,
    }
}

/// The layout of a type: a struct's (non-bitfield) members, or the type itself as field "".
fn layout_of(btf: &libbpf_rs::btf::Btf, t: BtfType) -> Layout {
    let t = t.skip_mods_and_typedefs();
    let name = t
        .name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(s) = types::Struct::try_from(t) {
        let fields = s
            .iter()
            .filter_map(|m| {
                let types::MemberAttr::Normal { offset } = m.attr else {
                    return None;
                };
                let ty = btf.type_by_id::<BtfType>(m.ty)?;
                Some(Field {
                    name: m.name?.to_string_lossy().into_owned(),
                    offset: offset as usize / 8,
                    size: size_of(ty),
                    kind: kind_of(ty),
                })
            })
            .collect();
        return Layout {
            name,
            size: s.size(),
            fields,
        };
    }
    Layout {
        name,
        size: size_of(t),
        fields: vec![Field {
            name: String::new(),
            offset: 0,
            size: size_of(t),
            kind: kind_of(t),
        }],
    }
}
