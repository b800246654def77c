//! Block layouts: one `#[repr(C)]` struct per ggml block type, byte for byte as in
//! ggml-common.h.
//!
//! # Representation choices
//!
//! * **Every block has alignment 1.** Multi-byte fields are stored as little-endian byte
//!   arrays wrapped in [`F16Le`], [`U16Le`], [`I16Le`] and [`F32Le`], never as `u16`/`f32`.
//!   Viewing any `&[u8]` as `&[Block]` is therefore always valid, whatever the address: a
//!   GGUF tensor inside a memory map is 32-byte aligned, but a row sliced from it, a network
//!   buffer or a `Vec<u8>` need not be, and the cast must not depend on that.
//!   Reading an unaligned `u16` costs nothing on x86-64 or AArch64.
//! * **f16 scales are [`F16Le`]** (the IEEE half bits, little-endian). `F16Le::to_f32` is
//!   exact, as ggml's `GGML_FP16_TO_FP32`; `F16Le::from_f32` rounds to nearest-even, as
//!   ggml's `GGML_FP32_TO_FP16` (and numpy's `astype(float16)`).
//! * GGUF is little-endian and so is every target perch supports; the wrappers still decode
//!   with `from_le_bytes`, so the layout is right by construction.
//!
//! The casts are done by [`bytemuck`] (every block is `Pod`), so this module has no `unsafe`.
//! [`as_blocks`] and [`as_blocks_mut`] check the length and return [`BlockCastError`] when the
//! bytes are not a whole number of blocks.

use bytemuck::{Pod, Zeroable};

use crate::types::{GgmlType, QK_K};

/// An IEEE binary16 value stored as its two little-endian bytes (alignment 1).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
#[repr(transparent)]
pub struct F16Le(pub [u8; 2]);

impl F16Le {
    /// Zero.
    pub const ZERO: F16Le = F16Le([0, 0]);

    /// From the raw half bits.
    #[inline]
    pub const fn from_bits(bits: u16) -> F16Le {
        F16Le(bits.to_le_bytes())
    }

    /// The raw half bits.
    #[inline]
    pub const fn to_bits(self) -> u16 {
        u16::from_le_bytes(self.0)
    }

    /// Rounds `x` to the nearest half (ties to even), as ggml's `GGML_FP32_TO_FP16`.
    #[inline]
    pub fn from_f32(x: f32) -> F16Le {
        F16Le::from_bits(half::f16::from_f32(x).to_bits())
    }

    /// The exact `f32` value of the half.
    #[inline]
    pub fn to_f32(self) -> f32 {
        half::f16::from_bits(self.to_bits()).to_f32()
    }
}

impl std::fmt::Debug for F16Le {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_f32())
    }
}

/// A `u16` stored as its two little-endian bytes (alignment 1).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug, Pod, Zeroable)]
#[repr(transparent)]
pub struct U16Le(pub [u8; 2]);

impl U16Le {
    /// Wraps a value.
    #[inline]
    pub const fn new(v: u16) -> U16Le {
        U16Le(v.to_le_bytes())
    }

    /// The value.
    #[inline]
    pub const fn get(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
}

/// An `i16` stored as its two little-endian bytes (alignment 1).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug, Pod, Zeroable)]
#[repr(transparent)]
pub struct I16Le(pub [u8; 2]);

impl I16Le {
    /// Wraps a value.
    #[inline]
    pub const fn new(v: i16) -> I16Le {
        I16Le(v.to_le_bytes())
    }

    /// The value.
    #[inline]
    pub const fn get(self) -> i16 {
        i16::from_le_bytes(self.0)
    }
}

/// An `f32` stored as its four little-endian bytes (alignment 1).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug, Pod, Zeroable)]
#[repr(transparent)]
pub struct F32Le(pub [u8; 4]);

impl F32Le {
    /// Wraps a value.
    #[inline]
    pub const fn new(v: f32) -> F32Le {
        F32Le(v.to_bits().to_le_bytes())
    }

    /// The value.
    #[inline]
    pub const fn get(self) -> f32 {
        f32::from_bits(u32::from_le_bytes(self.0))
    }
}

/// Elements per Q1_0 block.
pub const QK1_0: usize = 128;
/// Elements per Q2_0 block.
pub const QK2_0: usize = 64;
/// Elements per Q4_0 block.
pub const QK4_0: usize = 32;
/// Elements per Q4_1 block.
pub const QK4_1: usize = 32;
/// Elements per Q5_0 block.
pub const QK5_0: usize = 32;
/// Elements per Q5_1 block.
pub const QK5_1: usize = 32;
/// Elements per Q8_0 block.
pub const QK8_0: usize = 32;
/// Elements per Q8_1 block.
pub const QK8_1: usize = 32;
/// Elements per MXFP4 block.
pub const QK_MXFP4: usize = 32;
/// Elements per NVFP4 block.
pub const QK_NVFP4: usize = 64;
/// Elements per NVFP4 sub-block (one UE4M3 scale each).
pub const QK_NVFP4_SUB: usize = 16;
/// Elements per IQ4_NL block.
pub const QK4_NL: usize = 32;
/// Bytes of packed 6-bit scales and mins in Q4_K / Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// A ggml block type: a `#[repr(C)]`, alignment-1, plain-old-data struct.
pub trait Block: Pod {
    /// The ggml type whose blocks these are.
    const TYPE: GgmlType;
    /// Elements per block.
    const BLOCK_SIZE: usize = Self::TYPE.block_size();
}

macro_rules! blocks {
    ($($(#[$m:meta])* $name:ident : $ty:ident { $($(#[$fm:meta])* $f:ident : $ft:ty),* $(,)? })*) => {
        $(
            $(#[$m])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
            #[repr(C)]
            pub struct $name {
                $($(#[$fm])* pub $f: $ft,)*
            }

            impl Block for $name {
                const TYPE: GgmlType = GgmlType::$ty;
            }

            const _: () = assert!(size_of::<$name>() == GgmlType::$ty.type_size());
            const _: () = assert!(align_of::<$name>() == 1);
        )*
    };
}

blocks! {
    /// Q1_0: 128 elements, one sign bit each, `x = d * (bit ? 1 : -1)`.
    BlockQ1_0: Q1_0 {
        /// Scale.
        d: F16Le,
        /// One bit per element, element `j` in bit `j % 8` of byte `j / 8`.
        qs: [u8; QK1_0 / 8],
    }

    /// Q2_0: 64 elements, 2-bit quants.
    BlockQ2_0: Q2_0 {
        /// Scale.
        d: F16Le,
        /// Two bits per element.
        qs: [u8; QK2_0 / 4],
    }

    /// Q4_0: 32 elements, `x = d * (q - 8)`.
    BlockQ4_0: Q4_0 {
        /// Scale.
        d: F16Le,
        /// Nibbles: element `j` in the low nibble of `qs[j]`, element `j + 16` in the high one.
        qs: [u8; QK4_0 / 2],
    }

    /// Q4_1: 32 elements, `x = d * q + m`.
    BlockQ4_1: Q4_1 {
        /// Scale.
        d: F16Le,
        /// Minimum.
        m: F16Le,
        /// Nibbles, as in Q4_0.
        qs: [u8; QK4_1 / 2],
    }

    /// MXFP4: 32 E2M1 values sharing one E8M0 scale.
    BlockMxfp4: MXFP4 {
        /// E8M0 exponent.
        e: u8,
        /// Nibbles (indices into the E2M1 table), as in Q4_0.
        qs: [u8; QK_MXFP4 / 2],
    }

    /// NVFP4: 64 E2M1 values, one UE4M3 scale per 16.
    BlockNvfp4: NVFP4 {
        /// UE4M3 scales, one per 16-element sub-block.
        d: [u8; QK_NVFP4 / QK_NVFP4_SUB],
        /// Packed E2M1 nibbles.
        qs: [u8; QK_NVFP4 / 2],
    }

    /// Q5_0: 32 elements, `x = d * (q - 16)`.
    BlockQ5_0: Q5_0 {
        /// Scale.
        d: F16Le,
        /// Fifth bits: bit `j` of the little-endian `u32` is element `j`'s.
        qh: [u8; 4],
        /// Low nibbles, as in Q4_0.
        qs: [u8; QK5_0 / 2],
    }

    /// Q5_1: 32 elements, `x = d * q + m`.
    BlockQ5_1: Q5_1 {
        /// Scale.
        d: F16Le,
        /// Minimum.
        m: F16Le,
        /// Fifth bits, as in Q5_0.
        qh: [u8; 4],
        /// Low nibbles, as in Q4_0.
        qs: [u8; QK5_1 / 2],
    }

    /// Q8_0: 32 elements, `x = d * q`.
    BlockQ8_0: Q8_0 {
        /// Scale.
        d: F16Le,
        /// Quants.
        qs: [i8; QK8_0],
    }

    /// Q8_1: 32 elements, `x = d * q`, with `s = d * sum(q)` (the activation type of Q4_1/Q5_1).
    BlockQ8_1: Q8_1 {
        /// Scale.
        d: F16Le,
        /// `d * sum(qs)`.
        s: F16Le,
        /// Quants.
        qs: [i8; QK8_1],
    }

    /// TQ1_0: 256 ternary elements, five per byte in base 3, then four per byte.
    BlockTq1_0: TQ1_0 {
        /// Base-3 packed trits, five per byte (`(QK_K - 4 * QK_K / 64) / 5` bytes).
        qs: [u8; (QK_K - 4 * QK_K / 64) / 5],
        /// The last 16 elements, four per byte.
        qh: [u8; QK_K / 64],
        /// Scale.
        d: F16Le,
    }

    /// TQ2_0: 256 ternary elements, 2 bits each.
    BlockTq2_0: TQ2_0 {
        /// Two bits per element.
        qs: [u8; QK_K / 4],
        /// Scale.
        d: F16Le,
    }

    /// Q2_K: 16 sub-blocks of 16, `x = d * sc * q - dmin * m`.
    BlockQ2K: Q2_K {
        /// Per sub-block: scale in the low nibble, min in the high one.
        scales: [u8; QK_K / 16],
        /// Two bits per element.
        qs: [u8; QK_K / 4],
        /// Super-block scale of the scales.
        d: F16Le,
        /// Super-block scale of the mins.
        dmin: F16Le,
    }

    /// Q3_K: 16 sub-blocks of 16, `x = d * (sc - 32) * (q - 4 * !hbit)`.
    BlockQ3K: Q3_K {
        /// High bits of the quants.
        hmask: [u8; QK_K / 8],
        /// Low two bits of the quants.
        qs: [u8; QK_K / 4],
        /// Sixteen 6-bit scales, packed.
        scales: [u8; 12],
        /// Super-block scale.
        d: F16Le,
    }

    /// Q4_K: 8 sub-blocks of 32, `x = d * sc * q - dmin * m`.
    BlockQ4K: Q4_K {
        /// Super-block scale of the scales.
        d: F16Le,
        /// Super-block scale of the mins.
        dmin: F16Le,
        /// Eight 6-bit scales and eight 6-bit mins, packed.
        scales: [u8; K_SCALE_SIZE],
        /// Nibbles.
        qs: [u8; QK_K / 2],
    }

    /// Q5_K: 8 sub-blocks of 32, `x = d * sc * q - dmin * m`.
    BlockQ5K: Q5_K {
        /// Super-block scale of the scales.
        d: F16Le,
        /// Super-block scale of the mins.
        dmin: F16Le,
        /// Eight 6-bit scales and eight 6-bit mins, packed as in Q4_K.
        scales: [u8; K_SCALE_SIZE],
        /// Fifth bits.
        qh: [u8; QK_K / 8],
        /// Low nibbles.
        qs: [u8; QK_K / 2],
    }

    /// Q6_K: 16 sub-blocks of 16, `x = d * sc * (q - 32)`.
    BlockQ6K: Q6_K {
        /// Low four bits.
        ql: [u8; QK_K / 2],
        /// High two bits.
        qh: [u8; QK_K / 4],
        /// 8-bit signed scales.
        scales: [i8; QK_K / 16],
        /// Super-block scale.
        d: F16Le,
    }

    /// Q8_K: 256 elements, `x = d * q`, with sums of 16 quants (the activation type of the
    /// K- and I-quants). Its scale is an `f32`, not an f16.
    BlockQ8K: Q8_K {
        /// Scale.
        d: F32Le,
        /// Quants.
        qs: [i8; QK_K],
        /// Sum of each group of 16 quants.
        bsums: [I16Le; QK_K / 16],
    }

    /// IQ2_XXS: 2.0625 bpw, grid indices and signs packed in `u16`s.
    BlockIq2Xxs: IQ2_XXS {
        /// Super-block scale.
        d: F16Le,
        /// Per 32 elements, four `u16`: grid indices (bytes 0-3) and signs + scale (bytes 4-7).
        qs: [U16Le; QK_K / 8],
    }

    /// IQ2_XS: 2.3125 bpw.
    BlockIq2Xs: IQ2_XS {
        /// Super-block scale.
        d: F16Le,
        /// Per 8 elements: 9-bit grid index and 7-bit sign index.
        qs: [U16Le; QK_K / 8],
        /// 4-bit scales, two per byte.
        scales: [u8; QK_K / 32],
    }

    /// IQ2_S: 2.5625 bpw.
    BlockIq2S: IQ2_S {
        /// Super-block scale.
        d: F16Le,
        /// Low 8 bits of the grid indices, then the signs.
        qs: [u8; QK_K / 4],
        /// High 2 bits of the grid indices.
        qh: [u8; QK_K / 32],
        /// 4-bit scales, two per byte.
        scales: [u8; QK_K / 32],
    }

    /// IQ3_XXS: 3.0625 bpw.
    BlockIq3Xxs: IQ3_XXS {
        /// Super-block scale.
        d: F16Le,
        /// Grid indices (64 bytes), then per 32 elements a `u32` of signs and scale.
        qs: [u8; 3 * QK_K / 8],
    }

    /// IQ3_S: 3.4375 bpw.
    BlockIq3S: IQ3_S {
        /// Super-block scale.
        d: F16Le,
        /// Low 8 bits of the grid indices.
        qs: [u8; QK_K / 4],
        /// Ninth bits of the grid indices.
        qh: [u8; QK_K / 32],
        /// Sign bits.
        signs: [u8; QK_K / 8],
        /// 4-bit scales, two per byte.
        scales: [u8; QK_K / 64],
    }

    /// IQ1_S: 1.5625 bpw.
    BlockIq1S: IQ1_S {
        /// Super-block scale.
        d: F16Le,
        /// Low 8 bits of the grid indices.
        qs: [u8; QK_K / 8],
        /// Per 32 elements: high index bits, 3-bit scale and the delta sign.
        qh: [U16Le; QK_K / 32],
    }

    /// IQ1_M: 1.75 bpw. The f16 super-block scale is spread over the top nibbles of the
    /// four `u16` words of `scales`.
    BlockIq1M: IQ1_M {
        /// Low 8 bits of the grid indices.
        qs: [u8; QK_K / 8],
        /// High 3 bits of the grid indices and the delta signs.
        qh: [u8; QK_K / 16],
        /// 3-bit block scales and the pieces of the super-block scale.
        scales: [u8; QK_K / 32],
    }

    /// IQ4_NL: 32 elements, `x = d * kvalues_iq4nl[q]`.
    BlockIq4Nl: IQ4_NL {
        /// Scale.
        d: F16Le,
        /// Nibbles, as in Q4_0.
        qs: [u8; QK4_NL / 2],
    }

    /// IQ4_XS: 8 sub-blocks of 32, `x = d * (ls - 32) * kvalues_iq4nl[q]`.
    BlockIq4Xs: IQ4_XS {
        /// Super-block scale.
        d: F16Le,
        /// High 2 bits of the eight 6-bit scales.
        scales_h: U16Le,
        /// Low 4 bits of the eight 6-bit scales.
        scales_l: [u8; QK_K / 64],
        /// Nibbles.
        qs: [u8; QK_K / 2],
    }
}

/// Bytes that are not a whole number of blocks of the requested type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes are not a whole number of {ty} blocks ({block_bytes} bytes each)")]
pub struct BlockCastError {
    /// The block type asked for.
    pub ty: GgmlType,
    /// The length of the byte slice.
    pub len: usize,
    /// Bytes per block of `ty`.
    pub block_bytes: usize,
}

/// Views `bytes` as blocks of `B`. Works at any address (blocks have alignment 1); fails
/// only when `bytes.len()` is not a multiple of the block size.
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Result<&[B], BlockCastError> {
    bytemuck::try_cast_slice(bytes).map_err(|_| BlockCastError {
        ty: B::TYPE,
        len: bytes.len(),
        block_bytes: size_of::<B>(),
    })
}

/// Views `bytes` mutably as blocks of `B`. Works at any address; fails only when
/// `bytes.len()` is not a multiple of the block size.
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> Result<&mut [B], BlockCastError> {
    let len = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| BlockCastError {
        ty: B::TYPE,
        len,
        block_bytes: size_of::<B>(),
    })
}

/// Views blocks as their bytes.
pub fn blocks_as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    bytemuck::cast_slice(blocks)
}

/// Views blocks mutably as their bytes.
pub fn blocks_as_bytes_mut<B: Block>(blocks: &mut [B]) -> &mut [u8] {
    bytemuck::cast_slice_mut(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_works_at_every_offset_and_rejects_partial_blocks() {
        let buf: Vec<u8> = (0..=255u8).cycle().take(18 * 4 + 3).collect();
        for off in 0..3 {
            let bytes = &buf[off..off + 18 * 4];
            let blocks = as_blocks::<BlockQ4_0>(bytes).unwrap();
            assert_eq!(blocks.len(), 4);
            // d is the first two bytes, little-endian; qs the next 16.
            assert_eq!(
                blocks[1].d.to_bits(),
                u16::from_le_bytes([bytes[18], bytes[19]])
            );
            assert_eq!(blocks[3].qs[15], bytes[18 * 3 + 17]);
        }
        let err = as_blocks::<BlockQ4_0>(&buf[..19]).unwrap_err();
        assert_eq!(
            err,
            BlockCastError {
                ty: GgmlType::Q4_0,
                len: 19,
                block_bytes: 18
            }
        );
        assert!(as_blocks::<BlockQ8K>(&[]).unwrap().is_empty());
    }

    #[test]
    fn mutable_view_writes_through() {
        let mut buf = [0u8; 2 * 34 + 1];
        let blocks = as_blocks_mut::<BlockQ8_0>(&mut buf[1..]).unwrap();
        blocks[1].d = F16Le::from_f32(1.0);
        blocks[1].qs[31] = -1;
        assert_eq!(&buf[35..37], &[0x00, 0x3c]);
        assert_eq!(buf[68], 0xff);
    }

    #[test]
    fn field_offsets_match_ggml_common_h() {
        // Offsets of the fields that follow variable parts, as ggml-common.h lays them out.
        assert_eq!(core::mem::offset_of!(BlockTq1_0, qh), 48);
        assert_eq!(core::mem::offset_of!(BlockTq1_0, d), 52);
        assert_eq!(core::mem::offset_of!(BlockQ2K, d), 80);
        assert_eq!(core::mem::offset_of!(BlockQ3K, scales), 96);
        assert_eq!(core::mem::offset_of!(BlockQ3K, d), 108);
        assert_eq!(core::mem::offset_of!(BlockQ5K, qs), 48);
        assert_eq!(core::mem::offset_of!(BlockQ6K, d), 208);
        assert_eq!(core::mem::offset_of!(BlockQ8K, bsums), 260);
        assert_eq!(core::mem::offset_of!(BlockIq2Xs, scales), 66);
        assert_eq!(core::mem::offset_of!(BlockIq3S, scales), 106);
        assert_eq!(core::mem::offset_of!(BlockIq1S, qh), 34);
        assert_eq!(core::mem::offset_of!(BlockIq4Xs, qs), 8);
    }

    #[test]
    fn f16_round_trip_and_rounding() {
        assert_eq!(F16Le::from_f32(1.0).to_bits(), 0x3c00);
        assert_eq!(F16Le::from_f32(65504.0).to_f32(), 65504.0);
        // Ties to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
        assert_eq!(F16Le::from_f32(1.0 + 2f32.powi(-11)).to_f32(), 1.0);
        assert_eq!(F16Le::from_f32(2f32.powi(-24)).to_bits(), 1);
        assert_eq!(F32Le::new(-2.5).get(), -2.5);
        assert_eq!(I16Le::new(-300).get(), -300);
        assert_eq!(U16Le::new(0xbeef).get(), 0xbeef);
    }
}
