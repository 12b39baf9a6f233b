// Model.cs: a loaded checkpoint (qt_model) and its description.
using System;

namespace Qwentts
{
    /// <summary>What qt_model_get_info reports, with the strings copied.</summary>
    public sealed class ModelInfo
    {
        public int Kind;               // NativeMethods.QT_MODEL_*
        public string SizeLabel;
        public int SampleRate;
        public float FrameRate;
        public int Codebooks;
        public int TalkerHiddenSize;
        public int TalkerLayers;
        public int CodePredictorLayers;
        public bool CanClone;
        public int Device;
        public ulong TensorCount;
        public ulong WeightBytes;
        public string[] Languages;
        public string[] Speakers;
        /// <summary>Bytes the library filled (its struct_size).</summary>
        public uint StructSize;
    }

    /// <summary>A loaded Qwen3-TTS checkpoint. Immutable; share it across threads. Dispose to free it.</summary>
    public sealed class Model : IDisposable
    {
        readonly ModelHandle handle;

        Model(ModelHandle handle)
        {
            this.handle = handle;
        }

        /// <summary>The native handle, for calls this class does not wrap.</summary>
        public ModelHandle Handle { get { return handle; } }

        public static Model Load(string dir)
        {
            return Load(dir, NativeMethods.QT_DEVICE_CPU);
        }

        /// <summary>qt_load: throws QwenttsException (NOT_FOUND, BAD_CONFIG, ...) on failure.</summary>
        public static Model Load(string dir, int device)
        {
            if (dir == null) throw new ArgumentNullException("dir");
            ModelParams p = ModelParams.Create();
            p.Device = device;
            ModelHandle h;
            int status = NativeMethods.qt_load(Utf8.Encode(dir), ref p, out h);
            if (status < 0)
            {
                QwenttsException error = Status.Error("qt_load", status); // before any other call
                if (h != null) h.Dispose(); // invalid (NULL) handle: nothing to free
                throw error;
            }
            return new Model(h);
        }

        public ModelInfo GetInfo()
        {
            ModelInfoNative raw = ModelInfoNative.Create();
            Status.Check("qt_model_get_info", NativeMethods.qt_model_get_info(handle, ref raw));
            var info = new ModelInfo();
            info.StructSize = raw.StructSize;
            info.Kind = raw.Kind;
            info.SizeLabel = Utf8.Decode(raw.SizeLabel);
            info.SampleRate = raw.SampleRate;
            info.FrameRate = raw.FrameRate;
            info.Codebooks = raw.NCodebooks;
            info.TalkerHiddenSize = raw.TalkerHiddenSize;
            info.TalkerLayers = raw.TalkerLayers;
            info.CodePredictorLayers = raw.CodePredictorLayers;
            info.CanClone = raw.CanClone != 0;
            info.Device = raw.Device;
            info.TensorCount = raw.TensorCount;
            info.WeightBytes = raw.WeightBytes;
            info.Languages = new string[(int)raw.NLanguages.ToUInt64()];
            for (int i = 0; i < info.Languages.Length; i++)
            {
                IntPtr name;
                Status.Check("qt_model_language", NativeMethods.qt_model_language(handle, (UIntPtr)i, out name));
                info.Languages[i] = Utf8.Decode(name);
            }
            info.Speakers = new string[(int)raw.NSpeakers.ToUInt64()];
            for (int i = 0; i < info.Speakers.Length; i++)
            {
                IntPtr name;
                Status.Check("qt_model_speaker", NativeMethods.qt_model_speaker(handle, (UIntPtr)i, out name));
                info.Speakers[i] = Utf8.Decode(name);
            }
            return info;
        }

        public void Dispose()
        {
            handle.Dispose();
        }
    }
}
