// Structs.cs: blittable mirrors of the qwentts.h structs, field for field. StructSize must be
// set from Marshal.SizeOf (the Create helpers do), so a newer library never writes past them.
using System;
using System.Runtime.InteropServices;

namespace Qwentts
{
    /// <summary>qt_model_params. Fill with Create(), then change fields.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ModelParams
    {
        public uint StructSize;
        public int Device; // QT_DEVICE_CPU or a CUDA ordinal

        /// <summary>The library's defaults (qt_model_params_default).</summary>
        public static ModelParams Create()
        {
            var p = new ModelParams();
            int size = Marshal.SizeOf(typeof(ModelParams));
            Status.Check("qt_model_params_default",
                NativeMethods.qt_model_params_default(ref p, (UIntPtr)size));
            return p;
        }
    }

    /// <summary>qt_model_info. SizeLabel points into the model: copy it before the model is freed.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ModelInfoNative
    {
        public uint StructSize;
        public int Kind;
        public IntPtr SizeLabel;
        public int SampleRate;
        public float FrameRate;
        public int NCodebooks;
        public int TalkerHiddenSize;
        public int TalkerLayers;
        public int CodePredictorLayers;
        public int CanClone;
        public int Device;
        public UIntPtr NLanguages;
        public UIntPtr NSpeakers;
        public ulong TensorCount;
        public ulong WeightBytes;

        /// <summary>An empty struct with StructSize set, ready for qt_model_get_info.</summary>
        public static ModelInfoNative Create()
        {
            var info = new ModelInfoNative();
            info.StructSize = (uint)Marshal.SizeOf(typeof(ModelInfoNative));
            return info;
        }
    }
}
