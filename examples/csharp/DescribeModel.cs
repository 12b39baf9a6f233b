// DescribeModel.cs: load a Qwen3-TTS checkpoint through the C# bindings and print what it is.
//
// Build and run from the repository root (after `cargo build`; Mono: apt-get install mono-mcs):
//   mcs -out:DescribeModel.exe bindings/csharp/*.cs examples/csharp/DescribeModel.cs
//   LD_LIBRARY_PATH=target/debug mono DescribeModel.exe tests/fixtures/tiny-base
using System;
using System.Globalization;
using Qwentts;

static class DescribeModel
{
    static string KindName(int kind)
    {
        switch (kind)
        {
            case NativeMethods.QT_MODEL_BASE: return "base";
            case NativeMethods.QT_MODEL_CUSTOM_VOICE: return "custom-voice";
            case NativeMethods.QT_MODEL_VOICE_DESIGN: return "voice-design";
            default: return "unknown";
        }
    }

    static string Names(string[] names)
    {
        return names.Length == 0 ? " (none)" : " " + string.Join(", ", names);
    }

    static int Main(string[] args)
    {
        string dir = args.Length > 0 ? args[0] : "tests/fixtures/tiny-base";
        CultureInfo inv = CultureInfo.InvariantCulture;
        try
        {
            Library.RequireAbi();
            Console.WriteLine("qwentts " + Library.Version + " (ABI " + Library.AbiVersion + ")");

            using (Model model = Model.Load(dir))
            {
                ModelInfo info = model.GetInfo();
                Console.WriteLine("model: " + dir);
                Console.WriteLine("kind: " + KindName(info.Kind));
                Console.WriteLine("size: " + info.SizeLabel);
                Console.WriteLine("sample rate: " + info.SampleRate.ToString(inv) + " Hz");
                Console.WriteLine("frame rate: " + info.FrameRate.ToString(inv) + " Hz");
                Console.WriteLine("codebooks: " + info.Codebooks.ToString(inv));
                Console.WriteLine("talker: " + info.TalkerLayers.ToString(inv) + " layers, hidden " +
                                  info.TalkerHiddenSize.ToString(inv));
                Console.WriteLine("code predictor: " + info.CodePredictorLayers.ToString(inv) + " layers");
                Console.WriteLine("can clone: " + (info.CanClone ? "yes" : "no"));
                Console.WriteLine("weights: " + info.TensorCount.ToString(inv) + " tensors, " +
                                  info.WeightBytes.ToString(inv) + " bytes");
                Console.WriteLine("languages:" + Names(info.Languages));
                Console.WriteLine("speakers:" + Names(info.Speakers));
            } // Dispose frees the model (qt_free)
            return 0;
        }
        catch (QwenttsException e)
        {
            Console.Error.WriteLine(e.Message); // "QT_STATUS_NOT_FOUND: qt_load: model directory ... not found"
            return 1;
        }
    }
}
