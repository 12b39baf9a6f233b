// UnityEngineStub.cs: the few UnityEngine declarations examples/csharp/unity/QwenttsSpeaker.cs
// uses, with the signatures Unity documents, so that the tests can at least compile the
// MonoBehaviour (it does not run: there is no engine here).
using System;

namespace UnityEngine
{
    public class Object { }
    public class Component : Object
    {
        public T GetComponent<T>() where T : class { return null; }
    }
    public class Behaviour : Component { }
    public class MonoBehaviour : Behaviour { }
    public sealed class AudioSource : Behaviour
    {
        public bool isPlaying { get { return false; } }
        public void Play() { }
    }
    public sealed class AudioSettings
    {
        public static int outputSampleRate { get { return 48000; } }
        public static void GetDSPBufferSize(out int bufferLength, out int numBuffers) { bufferLength = 1024; numBuffers = 4; }
    }
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
    public sealed class RequireComponent : Attribute
    {
        public RequireComponent(Type requiredComponent) { }
    }
}
