// Voice.cs: a voice (qt_voice): cloned from reference audio, rebuilt from an x-vector, a built-in
// speaker, described in words, or loaded from bytes or a file. Created by Model methods; Dispose frees it.
using System;

namespace Qwentts
{
    /// <summary>What qt_voice_get_info reports, with the strings copied.</summary>
    public sealed class VoiceInfo
    {
        public int Kind;          // NativeMethods.QT_VOICE_*
        public int EmbeddingDim;  // floats in the x-vector; 0 for a built-in speaker
        public int RefFrames;     // in-context reference frames; 0 unless QT_VOICE_ICL
        public string RefText;    // ICL transcript, else null
        public string Speaker;    // built-in speaker name, else null
        public string Description; // a designed voice's description, else null
        /// <summary>Bytes the library filled (its struct_size).</summary>
        public uint StructSize;
    }

    /// <summary>Who speaks. Immutable; share it across threads. Dispose to free it (it does not
    /// depend on the model that made it).</summary>
    public sealed class Voice : IDisposable
    {
        readonly VoiceHandle handle;

        internal Voice(VoiceHandle handle)
        {
            this.handle = handle;
        }

        /// <summary>The native handle, for calls this class does not wrap.</summary>
        public VoiceHandle Handle { get { return handle; } }

        /// <summary>The result of a call that returns a voice: the voice, or the exception.</summary>
        internal static Voice FromCall(string call, int status, VoiceHandle h)
        {
            if (status < 0)
            {
                QwenttsException error = Status.Error(call, status); // before any other call
                if (h != null) h.Dispose();
                throw error;
            }
            return new Voice(h);
        }

        public VoiceInfo GetInfo()
        {
            var raw = new VoiceInfoNative();
            raw.StructSize = (uint)System.Runtime.InteropServices.Marshal.SizeOf(typeof(VoiceInfoNative));
            Status.Check("qt_voice_get_info", NativeMethods.qt_voice_get_info(handle, ref raw));
            var info = new VoiceInfo();
            info.StructSize = raw.StructSize;
            info.Kind = raw.Kind;
            info.EmbeddingDim = (int)raw.EmbeddingDim.ToUInt64();
            info.RefFrames = (int)raw.RefFrames.ToUInt64();
            info.RefText = Utf8.Decode(raw.RefText);
            info.Speaker = Utf8.Decode(raw.Speaker);
            info.Description = Utf8.Decode(raw.Description);
            return info;
        }

        /// <summary>The speaker x-vector of a cloned voice (Model.VoiceFromEmbedding rebuilds a voice from it).</summary>
        public float[] GetEmbedding()
        {
            UIntPtr n;
            ExpectSize("qt_voice_embedding", NativeMethods.qt_voice_embedding(handle, null, UIntPtr.Zero, out n));
            var output = new float[(int)n.ToUInt64()];
            Status.Check("qt_voice_embedding", NativeMethods.qt_voice_embedding(handle, output, n, out n));
            return output;
        }

        /// <summary>The bytes Model.DeserializeVoice reads back (two-call pattern inside).</summary>
        public byte[] Serialize()
        {
            UIntPtr n;
            ExpectSize("qt_voice_serialize", NativeMethods.qt_voice_serialize(handle, null, UIntPtr.Zero, out n));
            var output = new byte[(int)n.ToUInt64()];
            Status.Check("qt_voice_serialize", NativeMethods.qt_voice_serialize(handle, output, n, out n));
            return output;
        }

        /// <summary>Writes the Serialize() bytes to a file (replacing it).</summary>
        public void Save(string path)
        {
            if (path == null) throw new ArgumentNullException("path");
            Status.Check("qt_voice_save", NativeMethods.qt_voice_save(handle, Utf8.Encode(path)));
        }

        // The size query answers QT_STATUS_BUFFER_TOO_SMALL; anything else is an error.
        static void ExpectSize(string call, int status)
        {
            if (status != NativeMethods.QT_STATUS_BUFFER_TOO_SMALL) Status.Check(call, status);
        }

        public void Dispose()
        {
            handle.Dispose();
        }
    }
}
