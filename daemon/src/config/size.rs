//! Byte sizes in the config file: a number of bytes (`33554432`) or a string with a unit
//! (`"32MiB"`, `"512 KiB"`, `"1GB"`; binary units are powers of 1024, decimal ones of 1000),
//! parsed by the `bytesize` crate; written back (by `check-config`) as a number of bytes.

use serde::{Deserialize, Deserializer, Serializer, de};

/// The example every "expected a size" error is given.
pub const EXAMPLE: &str = "sizes are a number of bytes or a string with a unit, e.g. \"32MiB\"";

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Bytes(u64),
    Text(String),
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Written::deserialize(d).map_err(|_| de::Error::custom(EXAMPLE))? {
        Written::Bytes(n) => Ok(n),
        Written::Text(t) => t
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| de::Error::custom(format!("{t:?} is not a size ({e}); {EXAMPLE}"))),
    }
}

pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "deserialize")]
        size: u64,
    }

    fn size(text: &str) -> Result<u64, toml::de::Error> {
        toml::from_str::<T>(&format!("size = {text}")).map(|t| t.size)
    }

    #[test]
    fn issue_14_numbers_and_strings_with_units() {
        for (text, bytes) in [
            ("33554432", 33_554_432),
            ("0", 0),
            ("\"32MiB\"", 32 << 20),
            ("\"32 MiB\"", 32 << 20),
            ("\"512KiB\"", 512 << 10),
            ("\"1GiB\"", 1 << 30),
            ("\"1MB\"", 1_000_000),
            ("\"100\"", 100),
        ] {
            assert_eq!(size(text).ok(), Some(bytes), "{text}");
        }
        for bad in ["-1", "\"lots\"", "\"32 parsecs\"", "1.5", "true"] {
            let e = size(bad).expect_err(bad).to_string();
            assert!(e.contains("e.g. \"32MiB\""), "{bad}: {e}");
        }
    }
}
